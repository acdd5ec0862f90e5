//! Backup: resolve the index patterns, read each index's settings, mappings
//! and aliases, and stream its documents page by page (scroll) into an
//! NDJSON artifact.

use std::borrow::Cow;
use std::io::Write;

use cairn_guest::http::{Method, Pending, Request};
use cairn_guest::progress::{self, Unit};
use cairn_guest::{Error, ErrorContext, Result, Value, json, log, storage, time};
use serde::Deserialize;
use serde_json::Map;
use serde_json::value::RawValue;

use crate::client::{Es, EsProblem, encode};
use crate::cluster::Version;
use crate::manifest::{FORMAT, IndexDump, Kind, MANIFEST, Manifest, TemplateDump};
use crate::names::{documents_artifact, glob_match, pattern_may_pick, restorable_settings};
use crate::{ClosedIndices, HiddenIndices, Params, cluster_version};

/// One row of `GET /_cat/indices?format=json`.
#[derive(Debug, Deserialize)]
struct CatIndex {
    index: String,
    #[serde(default)]
    status: Option<String>,
}

/// An index or data stream `indices` picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub name: String,
    pub kind: Kind,
}

/// The answer of `GET /_resolve/index/{pattern}`.
#[derive(Debug, Default, Deserialize)]
struct Resolved {
    #[serde(default)]
    indices: Vec<ResolvedIndex>,
    #[serde(default)]
    aliases: Vec<ResolvedAlias>,
    #[serde(default)]
    data_streams: Vec<ResolvedStream>,
}

#[derive(Debug, Deserialize)]
struct ResolvedIndex {
    name: String,
    #[serde(default)]
    attributes: Vec<String>,
    #[serde(default)]
    data_stream: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResolvedAlias {
    name: String,
    #[serde(default)]
    indices: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ResolvedStream {
    name: String,
}

/// What the patterns matched, before the closed/hidden choices.
#[derive(Default)]
struct Matches {
    picked: Vec<Picked>,
    closed: Vec<String>,
    hidden: Vec<String>,
}

impl Matches {
    fn pick(&mut self, name: &str, kind: Kind) {
        if !self.picked.iter().any(|p| p.name == name) {
            self.picked.push(Picked {
                name: name.to_owned(),
                kind,
            });
        }
    }

    fn exclude(&mut self, pattern: &str) {
        self.picked.retain(|p| !glob_match(pattern, &p.name));
        self.closed.retain(|n| !glob_match(pattern, n));
        self.hidden.retain(|n| !glob_match(pattern, n));
    }
}

/// The indices and data streams `patterns` name on the cluster, sorted. A
/// pattern starting with `-` removes what it matches from those picked
/// before it. Closed indices fail the run or are skipped (`closed-indices`);
/// hidden ones matched by a wildcard are skipped (`hidden-indices`), never
/// silently.
///
/// # Errors
///
/// `not-found` for a pattern that matches nothing, naming it and the
/// cluster; `failed` for closed indices with `closed-indices = "fail"`.
pub fn resolve_indices(es: &Es, params: &Params, version: Option<Version>) -> Result<Vec<Picked>> {
    let use_resolve = version.is_none_or(Version::has_resolve_api);
    let mut m = Matches::default();
    for pattern in &params.indices {
        if let Some(excluded) = pattern.strip_prefix('-') {
            m.exclude(excluded);
            continue;
        }
        let matched = if use_resolve {
            resolve_pattern(es, params, pattern, &mut m)?
        } else {
            cat_pattern(es, pattern, &mut m)?
        };
        if matched == 0 {
            return Err(Error::not_found(format!(
                "index pattern `{pattern}` matches no index on {}",
                es.url()
            )));
        }
    }
    if !m.hidden.is_empty() {
        log::warn(format!(
            "hidden indices matched by `indices` and left out (set `hidden-indices = \
             \"include\"` to dump them, or name them): {}",
            m.hidden.join(", ")
        ));
    }
    if !m.closed.is_empty() {
        match params.closed_indices {
            ClosedIndices::Fail => {
                return Err(Error::failed(format!(
                    "closed indices on {} cannot be read: {}; open them (`POST /{}/_open`), \
                     leave them out of `indices`, or set `closed-indices = \"skip\"`",
                    es.url(),
                    m.closed.join(", "),
                    m.closed.join(",")
                )));
            }
            ClosedIndices::Skip => log::warn(format!(
                "closed indices left out (`closed-indices = \"skip\"`): {}",
                m.closed.join(", ")
            )),
        }
    }
    let mut picked = m.picked;
    picked.sort_by(|a, b| a.name.cmp(&b.name));
    if picked.is_empty() {
        return Err(Error::not_found(format!(
            "`indices` = {:?} leaves no index to dump on {}",
            params.indices,
            es.url()
        )));
    }
    Ok(picked)
}

/// One pattern through `GET /_resolve/index` (Elasticsearch 7.9+, every
/// OpenSearch): it needs `view_index_metadata` only, and tells open from
/// closed and hidden, and indices from data streams. Returns how many
/// entries the pattern matched.
fn resolve_pattern(es: &Es, params: &Params, pattern: &str, m: &mut Matches) -> Result<usize> {
    let mut matched = 0;
    let path = format!("/_resolve/index/{}?expand_wildcards=all", encode(pattern));
    let resolved: Resolved = es
        .get_json_opt(&path)
        .with_context(|| format!("resolving index pattern `{pattern}`"))?
        .unwrap_or_default();
    let wildcard = pattern.contains('*');
    for stream in &resolved.data_streams {
        if wildcard && !pattern_may_pick(pattern, &stream.name) {
            continue;
        }
        matched += 1;
        m.pick(&stream.name, Kind::DataStream);
    }
    for index in &resolved.indices {
        // A data stream's backing indices are dumped with their stream.
        if index.data_stream.is_some() {
            continue;
        }
        let hidden = index.attributes.iter().any(|a| a == "hidden");
        let closed = index.attributes.iter().any(|a| a == "closed");
        if !(wildcard && !hidden && !pattern_may_pick(pattern, &index.name)) {
            matched += 1;
        }
        if wildcard && hidden && params.hidden_indices == HiddenIndices::Skip {
            if !m.hidden.contains(&index.name) {
                m.hidden.push(index.name.clone());
            }
            continue;
        }
        if wildcard && !hidden && !pattern_may_pick(pattern, &index.name) {
            continue;
        }
        if closed {
            if !m.closed.contains(&index.name) {
                m.closed.push(index.name.clone());
            }
            continue;
        }
        m.pick(&index.name, Kind::Index);
    }
    // An alias named (or matched) stands for its indices.
    for alias in &resolved.aliases {
        if wildcard && !pattern_may_pick(pattern, &alias.name) {
            continue;
        }
        for index in &alias.indices {
            matched += 1;
            let known = resolved.indices.iter().any(|i| &i.name == index);
            if !known {
                m.pick(index, Kind::Index);
            }
        }
    }
    Ok(matched)
}

/// One pattern through `GET /_cat/indices` (clusters before 7.9).
fn cat_pattern(es: &Es, pattern: &str, m: &mut Matches) -> Result<usize> {
    let mut matched = 0;
    let path = format!(
        "/_cat/indices/{}?format=json&h=index,status&expand_wildcards=all",
        encode(pattern)
    );
    let rows: Vec<CatIndex> = es.get_json_opt(&path)?.unwrap_or_default();
    let wildcard = pattern.contains('*');
    for row in rows {
        if wildcard && !pattern_may_pick(pattern, &row.index) {
            continue;
        }
        matched += 1;
        if row.status.as_deref() == Some("close") {
            if !m.closed.contains(&row.index) {
                m.closed.push(row.index);
            }
            continue;
        }
        m.pick(&row.index, Kind::Index);
    }
    Ok(matched)
}

/// The body of `GET /{index}` for one index.
#[derive(Debug, Default, Deserialize)]
struct IndexInfo {
    #[serde(default)]
    settings: Value,
    #[serde(default)]
    mappings: Value,
    #[serde(default)]
    aliases: Map<String, Value>,
}

/// Settings, mappings and aliases of `index`, with the documents artifact
/// named (not yet written), and its ILM policy (from the settings as read).
fn read_metadata(es: &Es, index: &str, taken: &[String]) -> Result<(IndexDump, Option<String>)> {
    let mut all: Map<String, Value> = es
        .get_json(&format!("/{}", encode(index)))
        .with_context(|| format!("reading the settings and mappings of index `{index}`"))?;
    let info = all
        .remove(index)
        .ok_or_else(|| Error::failed(format!("GET /{index} did not describe index `{index}`")))?;
    let info: IndexInfo = serde_json::from_value(info).map_err(|e| {
        Error::failed(format!(
            "GET /{index}: unexpected description of index `{index}`: {e}"
        ))
    })?;
    let (settings, dropped_settings) = restorable_settings(&info.settings);
    let policy = settings
        .get("index.lifecycle.name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((
        IndexDump {
            name: index.to_owned(),
            documents: 0,
            artifact: documents_artifact(index, taken),
            settings,
            mappings: if info.mappings.is_null() {
                Value::Object(Map::new())
            } else {
                info.mappings
            },
            aliases: info.aliases,
            kind: Kind::Index,
            template: None,
            dropped_settings,
        },
        policy,
    ))
}

/// A data stream: its template, and the mappings of its write index.
fn read_stream_metadata(es: &Es, name: &str, taken: &[String]) -> Result<IndexDump> {
    let info: Value = es
        .get_json(&format!("/_data_stream/{}", encode(name)))
        .with_context(|| format!("reading data stream `{name}`"))?;
    let stream = info["data_streams"]
        .as_array()
        .and_then(|l| l.iter().find(|d| d["name"] == name))
        .ok_or_else(|| Error::failed(format!("GET /_data_stream/{name} did not describe it")))?;
    let template = stream["template"].as_str().map(str::to_owned);
    let write_index = stream["indices"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|i| i["index_name"].as_str())
        .map(str::to_owned);
    let mut mappings = Value::Object(Map::new());
    if let Some(write_index) = write_index {
        let mut all: Map<String, Value> = es
            .get_json(&format!("/{}/_mapping", encode(&write_index)))
            .with_context(|| format!("reading the mappings of data stream `{name}`"))?;
        if let Some(m) = all.remove(&write_index) {
            mappings = m["mappings"].clone();
        }
    }
    Ok(IndexDump {
        name: name.to_owned(),
        documents: 0,
        artifact: documents_artifact(name, taken),
        settings: Map::new(),
        mappings,
        aliases: Map::new(),
        kind: Kind::DataStream,
        template,
        dropped_settings: Vec::new(),
    })
}

/// `GET /{index}/_count`.
pub fn count(es: &Es, index: &str) -> Result<u64> {
    #[derive(Deserialize)]
    struct Count {
        count: u64,
    }
    let count: Count = es.get_json(&format!("/{}/_count", encode(index)))?;
    Ok(count.count)
}

/// A scroll page: only what the dump writes is parsed into values; `_id`
/// and `_routing` are borrowed from the body unless they hold escapes, and
/// `_source` stays the raw bytes received.
#[derive(Deserialize)]
struct Page<'a> {
    #[serde(rename = "_scroll_id", default)]
    scroll_id: Option<String>,
    #[serde(default)]
    timed_out: bool,
    #[serde(rename = "_shards", default)]
    shards: Option<Shards>,
    #[serde(borrow)]
    hits: Hits<'a>,
}

#[derive(Deserialize)]
struct Hits<'a> {
    #[serde(borrow)]
    hits: Vec<Hit<'a>>,
}

#[derive(Deserialize)]
struct Hit<'a> {
    #[serde(rename = "_id", borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "_routing", borrow, default)]
    routing: Option<Cow<'a, str>>,
    #[serde(rename = "_source", borrow, default)]
    source: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Shards {
    #[serde(default)]
    failed: u64,
    #[serde(default)]
    failures: Vec<Value>,
}

/// Write one dump line: `{"_id":…,"_routing":…,"_source":…}\n`. The
/// source is copied as received unless it spans lines (a document indexed
/// pretty-printed), which NDJSON cannot hold: then it is written compact.
fn write_line(
    out: &mut impl Write,
    id: &str,
    routing: Option<&str>,
    source: &RawValue,
) -> Result<()> {
    out.write_all(b"{\"_id\":")?;
    serde_json::to_writer(&mut *out, id)?;
    if let Some(routing) = routing {
        out.write_all(b",\"_routing\":")?;
        serde_json::to_writer(&mut *out, routing)?;
    }
    out.write_all(b",\"_source\":")?;
    let raw = source.get().as_bytes();
    // (`contains` on bytes is a word-at-a-time search, unlike a byte loop)
    if raw.contains(&b'\n') || raw.contains(&b'\r') {
        let value: Value = serde_json::from_slice(raw)?;
        serde_json::to_writer(&mut *out, &value)?;
    } else {
        out.write_all(raw)?;
    }
    out.write_all(b"}\n")?;
    Ok(())
}

/// Open scrolls, cleared (`DELETE /_search/scroll`) when dropped: after
/// the last page, and on every error path.
struct Scrolls<'a> {
    es: &'a Es,
    ids: Vec<Option<String>>,
}

impl Drop for Scrolls<'_> {
    fn drop(&mut self) {
        let ids: Vec<String> = self.ids.iter_mut().filter_map(Option::take).collect();
        if ids.is_empty() {
            return;
        }
        let request = self.es.request(Method::Delete, "/_search/scroll");
        let cleared = request
            .json(&json!({ "scroll_id": ids }))
            .and_then(|r| self.es.send(&r));
        match cleared {
            Ok(r) if r.is_success() || r.status == 404 => {}
            Ok(r) => log::warn(format!(
                "could not clear a scroll: {}",
                self.es.status_error(&r)
            )),
            Err(e) => log::warn(format!("could not clear a scroll: {e}")),
        }
    }
}

/// Documents done out of all indices of a run, reported as they advance.
pub struct Progress {
    /// Documents done so far.
    pub done: u64,
    /// Documents expected in all.
    pub total: u64,
}

impl Progress {
    /// `n` more documents done.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        self.total = self.total.max(self.done);
        progress::report(self.done, self.total, Unit::Items);
    }
}

/// One slice of a (sliced) scroll: the request on its way, if any.
struct Slice {
    request: Option<Request>,
    pending: Option<Result<Pending>>,
    done: bool,
}

/// Stream the documents of `dump.name` into artifact `dump.artifact`, page
/// by page, reading `slices` sliced scrolls at once (one request on its way
/// per slice, so at most `slices` pages are in memory); returns how many
/// were written. A page with failed shards or `timed_out` fails the run:
/// its documents would be missing.
fn dump_documents(
    es: &Es,
    params: &Params,
    dump: &IndexDump,
    expected: u64,
    progress: &mut Progress,
) -> Result<u64> {
    let index = dump.name.as_str();
    let mut out = storage::create(&dump.artifact)?;
    let n = if expected > u64::from(params.batch_size) {
        params.slices as usize
    } else {
        1
    };
    let mut scrolls = Scrolls {
        es,
        ids: vec![None; n],
    };
    let search_path = format!("/{}/_search?scroll={}", encode(index), params.scroll);
    let mut slices: Vec<Slice> = Vec::with_capacity(n);
    for id in 0..n {
        let mut body = json!({ "size": params.batch_size, "sort": ["_doc"] });
        if n > 1 {
            body["slice"] = json!({ "id": id, "max": n });
        }
        let request = es.request(Method::Post, &search_path).json(&body)?;
        let pending = es.start(&request);
        slices.push(Slice {
            request: Some(request),
            pending: Some(pending),
            done: false,
        });
    }
    let mut read: u64 = 0;
    while slices.iter().any(|s| !s.done) {
        for (i, slice) in slices.iter_mut().enumerate() {
            if slice.done {
                continue;
            }
            let (Some(request), Some(pending)) = (slice.request.take(), slice.pending.take())
            else {
                slice.done = true;
                continue;
            };
            let first = pending.and_then(|p| es.wait(p));
            let response = es
                .retry_after(&request, first)
                .with_context(|| format!("reading index `{index}` after {read} documents"))?;
            if !response.is_success() {
                let problem = EsProblem::parse(&response.body);
                if problem.mentions("search_context_missing_exception") {
                    return Err(scroll_failure(
                        es,
                        params,
                        index,
                        read,
                        expected,
                        &problem.to_string(),
                    ));
                }
                return Err(es
                    .status_error(&response)
                    .context(format!("reading index `{index}` after {read} documents")));
            }
            let mut page: Page = serde_json::from_slice(&response.body).map_err(|e| {
                Error::failed(format!(
                    "a search page of index `{index}` is not the expected JSON: {e}"
                ))
            })?;
            if let Some(id) = page.scroll_id.take() {
                scrolls.ids[i] = Some(id);
            }
            if let Some(shards) = &page.shards
                && shards.failed > 0
            {
                let problem = shards
                    .failures
                    .first()
                    .map(|f| {
                        EsProblem::parse(json!({ "error": f["reason"] }).to_string().as_bytes())
                    })
                    .map_or_else(|| "no reason given".to_owned(), |p| p.to_string());
                return Err(scroll_failure(es, params, index, read, expected, &problem));
            }
            if page.timed_out {
                return Err(Error::failed(format!(
                    "reading index `{index}` on {} timed out after {read} of {expected} \
                     documents (`timed_out` in a search page: its documents would be \
                     missing); nothing is kept",
                    es.url()
                )));
            }
            if page.hits.hits.is_empty() {
                slice.done = true;
                continue;
            }
            let got = page.hits.hits.len() as u64;
            let Some(scroll_id) = scrolls.ids[i].clone() else {
                return Err(Error::failed(format!(
                    "a search page of index `{index}` has no `_scroll_id`"
                )));
            };
            // Ask for this slice's next page now: the cluster prepares it
            // while this one is written. (Dropped unanswered on an error,
            // before the scrolls are cleared.)
            let next = es
                .request(Method::Post, "/_search/scroll")
                .json(&json!({ "scroll": params.scroll, "scroll_id": scroll_id }))?;
            slice.pending = Some(es.start(&next));
            slice.request = Some(next);
            for hit in &page.hits.hits {
                let source = hit.source.ok_or_else(|| {
                    Error::failed(format!(
                        "document `{}` of index `{index}` has no `_source` (is `_source` \
                         disabled in its mappings?); such an index cannot be dumped, only \
                         snapshotted",
                        hit.id
                    ))
                })?;
                write_line(&mut out, &hit.id, hit.routing.as_deref(), source)
                    .with_context(|| format!("writing artifact `{}`", dump.artifact))?;
            }
            drop(page);
            read += got;
            progress.advance(got);
        }
    }
    drop(scrolls);
    out.finish()
        .with_context(|| format!("storing artifact `{}`", dump.artifact))?;
    Ok(read)
}

/// The error for a scroll that broke off: expired, or shards failed.
fn scroll_failure(
    es: &Es,
    params: &Params,
    index: &str,
    read: u64,
    expected: u64,
    problem: &str,
) -> Error {
    if problem.contains("search_context_missing_exception") {
        Error::failed(format!(
            "the scroll over index `{index}` on {} expired after {read} of {expected} documents \
             were read ({problem}); nothing is kept. The `scroll` lease ({}) must cover the time \
             between two pages: raise it, or lower `batch-size`",
            es.url(),
            params.scroll
        ))
    } else {
        Error::failed(format!(
            "reading index `{index}` on {} failed on some shards after {read} of {expected} \
             documents: {problem}; nothing is kept",
            es.url()
        ))
    }
}

/// The index templates (and the component templates they use) that match
/// a dumped index or data stream; templates the cluster manages itself
/// (`_meta.managed`, names starting with `.`) are left out.
fn read_templates(es: &Es, dumps: &[IndexDump]) -> Result<Vec<TemplateDump>> {
    let all: Option<Value> = es
        .get_json_opt("/_index_template")
        .context("reading the index templates (`templates = true`)")?;
    let mut out: Vec<TemplateDump> = Vec::new();
    let mut components: Vec<String> = Vec::new();
    for entry in all
        .as_ref()
        .and_then(|a| a["index_templates"].as_array())
        .into_iter()
        .flatten()
    {
        let name = entry["name"].as_str().unwrap_or_default();
        let body = &entry["index_template"];
        if name.starts_with('.') || body["_meta"]["managed"] == true {
            continue;
        }
        let patterns: Vec<&str> = body["index_patterns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let used = dumps.iter().any(|d| {
            d.template.as_deref() == Some(name) || patterns.iter().any(|p| glob_match(p, &d.name))
        });
        if !used {
            continue;
        }
        for c in body["composed_of"].as_array().into_iter().flatten() {
            if let Some(c) = c.as_str()
                && !components.iter().any(|x| x == c)
            {
                components.push(c.to_owned());
            }
        }
        out.push(TemplateDump {
            name: name.to_owned(),
            kind: "index".to_owned(),
            body: body.clone(),
        });
    }
    let mut component_dumps = Vec::new();
    for c in components {
        let found: Option<Value> = es
            .get_json_opt(&format!("/_component_template/{}", encode(&c)))
            .with_context(|| format!("reading component template `{c}`"))?;
        match found
            .as_ref()
            .and_then(|f| f["component_templates"].as_array())
            .and_then(|l| l.iter().find(|t| t["name"] == c.as_str()))
        {
            Some(t) => component_dumps.push(TemplateDump {
                name: c,
                kind: "component".to_owned(),
                body: t["component_template"].clone(),
            }),
            None => log::warn(format!(
                "component template `{c}` is used but could not be read: not dumped"
            )),
        }
    }
    // Component templates first: a restore creates them before the index
    // templates that use them.
    component_dumps.extend(out);
    Ok(component_dumps)
}

/// The ILM policies `names`, as `GET /_ilm/policy/{name}` gives `policy`.
fn read_policies(es: &Es, names: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for name in names {
        let found: Option<Value> = es
            .get_json_opt(&format!("/_ilm/policy/{}", encode(name)))
            .with_context(|| format!("reading ILM policy `{name}`"))?;
        match found.as_ref().map(|f| &f[name.as_str()]["policy"]) {
            Some(policy) if policy.is_object() => {
                out.insert(name.clone(), policy.clone());
            }
            _ => log::warn(format!(
                "ILM policy `{name}` is named by a dumped index but does not exist on the \
                 cluster: not dumped"
            )),
        }
    }
    Ok(out)
}

/// The backup: everything into the snapshot, or an error and nothing kept.
pub fn backup(params: &Params) -> Result<Value> {
    let es = params.client();
    let started = time::now_ms();
    let version = cluster_version(&es, params)?;
    let picked = resolve_indices(&es, params, version)?;
    log::info(format!(
        "dumping {} index(es) and data stream(s) from {}: {}",
        picked.len(),
        es.url(),
        picked
            .iter()
            .map(|p| match p.kind {
                Kind::Index => p.name.clone(),
                Kind::DataStream => format!("{} (data stream)", p.name),
            })
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let mut dumps: Vec<IndexDump> = Vec::with_capacity(picked.len());
    let mut expected = Vec::with_capacity(picked.len());
    let mut policies: Vec<String> = Vec::new();
    for p in &picked {
        let taken: Vec<String> = dumps.iter().map(|d| d.artifact.clone()).collect();
        let dump = match p.kind {
            Kind::Index => {
                let (dump, policy) = read_metadata(&es, &p.name, &taken)?;
                if let Some(policy) = policy
                    && !policies.contains(&policy)
                {
                    policies.push(policy);
                }
                dump
            }
            Kind::DataStream => read_stream_metadata(&es, &p.name, &taken)?,
        };
        if !dump.dropped_settings.is_empty() {
            log::info(format!(
                "index `{}`: settings left out of the dump (generated by Elasticsearch, or \
                 archived): {}",
                dump.name,
                dump.dropped_settings.join(", ")
            ));
        }
        dumps.push(dump);
        expected.push(count(&es, &p.name).with_context(|| format!("counting `{}`", p.name))?);
    }
    let templates = if params.templates {
        let t = read_templates(&es, &dumps)?;
        for template in &t {
            if let Some(policy) =
                template.body["template"]["settings"]["index"]["lifecycle"]["name"]
                    .as_str()
                    .or_else(|| {
                        template.body["template"]["settings"]["index.lifecycle.name"].as_str()
                    })
                && !policies.iter().any(|p| p == policy)
            {
                policies.push(policy.to_owned());
            }
        }
        log::info(format!(
            "dumping {} template(s): {}",
            t.len(),
            t.iter()
                .map(|t| format!("{} ({})", t.name, t.kind))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        t
    } else {
        Vec::new()
    };
    let ilm_policies = if params.ilm_policies && version.is_none_or(Version::has_ilm) {
        read_policies(&es, &policies)?
    } else {
        Map::new()
    };
    let mut progress = Progress {
        done: 0,
        total: expected.iter().sum(),
    };
    progress::report(0, progress.total, Unit::Items);

    for (dump, &expected) in dumps.iter_mut().zip(&expected) {
        let start = time::now_ms();
        dump.documents = dump_documents(&es, params, dump, expected, &mut progress)?;
        let secs = (time::now_ms().saturating_sub(start)).max(1) as f64 / 1000.0;
        log::info_with(
            format!(
                "dumped `{}`: {} documents ({:.0}/s)",
                dump.name,
                dump.documents,
                dump.documents as f64 / secs
            ),
            &[("artifact", &dump.artifact)],
        );
        if dump.documents != expected {
            log::warn(format!(
                "`{}` had {expected} documents when the dump started and {} were read: \
                 it changed meanwhile",
                dump.name, dump.documents
            ));
        }
    }

    let manifest = Manifest {
        format: FORMAT,
        dumped_at: crate::names::rfc3339(started),
        stamp: crate::names::stamp(started),
        url: es.url().to_owned(),
        version: version.map(|v| v.to_string()),
        indices: dumps,
        templates,
        ilm_policies,
    };
    let mut out = storage::create(MANIFEST)?;
    serde_json::to_writer(&mut out, &manifest)?;
    out.finish()?;

    let counts: Map<String, Value> = manifest
        .indices
        .iter()
        .map(|d| (d.name.clone(), Value::from(d.documents)))
        .collect();
    let total: u64 = manifest.indices.iter().map(|d| d.documents).sum();
    storage::set_note("format", &format!("elasticsearch-dump/{FORMAT}"))?;
    storage::set_note("dumped-at", &manifest.dumped_at)?;
    storage::set_note("documents", &Value::Object(counts.clone()).to_string())?;
    if let Some(version) = &manifest.version {
        storage::set_note("elasticsearch-version", version)?;
    }
    Ok(json!({
        "url": manifest.url,
        "dumped-at": manifest.dumped_at,
        "version": manifest.version,
        "indices": counts,
        "data-streams": manifest.indices.iter().filter(|d| d.kind == Kind::DataStream).map(|d| d.name.clone()).collect::<Vec<_>>(),
        "templates": manifest.templates.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "ilm-policies": manifest.ilm_policies.keys().cloned().collect::<Vec<_>>(),
        "documents": total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(page: &str) -> String {
        let page: Page = serde_json::from_str(page).unwrap();
        let mut out = Vec::new();
        for hit in &page.hits.hits {
            write_line(
                &mut out,
                &hit.id,
                hit.routing.as_deref(),
                hit.source.unwrap(),
            )
            .unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn pages_become_one_line_per_document_with_the_source_as_received() {
        let page = r#"{"_scroll_id":"abc","took":1,"timed_out":false,
            "_shards":{"total":1,"successful":1,"skipped":0,"failed":0},
            "hits":{"total":{"value":2,"relation":"eq"},"max_score":null,"hits":[
              {"_index":"a","_type":"_doc","_id":"1","_score":null,"_source":{"n": 1.50, "s":"x\ny"},"sort":[0]},
              {"_index":"a","_type":"_doc","_id":"q\"2","_routing":"r1","_score":null,"_source":{
                 "pretty": true
              },"sort":[1]}
            ]}}"#;
        assert_eq!(
            lines(page),
            "{\"_id\":\"1\",\"_source\":{\"n\": 1.50, \"s\":\"x\\ny\"}}\n\
             {\"_id\":\"q\\\"2\",\"_routing\":\"r1\",\"_source\":{\"pretty\":true}}\n"
        );
        let page: Page = serde_json::from_str(page).unwrap();
        assert_eq!(page.scroll_id.as_deref(), Some("abc"));
        assert!(matches!(page.hits.hits[0].id, Cow::Borrowed(_)));
    }

    #[test]
    fn pages_with_failed_shards_are_seen() {
        let page = r#"{"_scroll_id":"abc","_shards":{"total":2,"successful":1,"failed":1,
            "failures":[{"shard":0,"reason":{"type":"search_context_missing_exception","reason":"No search context found for id [3]"}}]},
            "hits":{"hits":[]}}"#;
        let page: Page = serde_json::from_str(page).unwrap();
        let shards = page.shards.unwrap();
        assert_eq!(shards.failed, 1);
        let p = EsProblem::parse(
            json!({ "error": shards.failures[0]["reason"] })
                .to_string()
                .as_bytes(),
        );
        assert!(p.mentions("search_context_missing_exception"));
    }
}
