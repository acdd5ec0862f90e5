//! Backup: resolve the index patterns, read each index's settings, mappings
//! and aliases, and stream its documents page by page (scroll) into an
//! NDJSON artifact.

use std::borrow::Cow;
use std::io::Write;

use cairn_guest::http::Method;
use cairn_guest::progress::{self, Unit};
use cairn_guest::{Error, ErrorContext, Result, Value, json, log, storage, time};
use serde::Deserialize;
use serde_json::Map;
use serde_json::value::RawValue;

use crate::client::{Es, EsProblem, encode};
use crate::manifest::{FORMAT, IndexDump, MANIFEST, Manifest};
use crate::names::{documents_artifact, glob_match, pattern_may_pick, restorable_settings};
use crate::{Params, cluster_version};

/// One row of `GET /_cat/indices?format=json`.
#[derive(Debug, Deserialize)]
struct CatIndex {
    index: String,
    #[serde(default)]
    status: Option<String>,
}

/// The indices `patterns` name on the cluster, sorted. A pattern starting
/// with `-` removes what it matches from the indices picked before it.
///
/// # Errors
///
/// `not-found` for a pattern that matches no (open) index, naming it and
/// the cluster; `failed` for a named index that is closed.
pub fn resolve_indices(es: &Es, patterns: &[String]) -> Result<Vec<String>> {
    let mut picked: Vec<String> = Vec::new();
    for pattern in patterns {
        if let Some(excluded) = pattern.strip_prefix('-') {
            picked.retain(|index| !glob_match(excluded, index));
            continue;
        }
        let path = format!(
            "/_cat/indices/{}?format=json&h=index,status",
            encode(pattern)
        );
        let rows: Vec<CatIndex> = es.get_json_opt(&path)?.unwrap_or_default();
        let wildcard = pattern.contains('*');
        let mut matched = 0;
        for row in rows {
            if wildcard && !pattern_may_pick(pattern, &row.index) {
                continue;
            }
            if row.status.as_deref() == Some("close") {
                if wildcard {
                    log::warn(format!(
                        "index `{}` (matched by `{pattern}`) is closed: skipped",
                        row.index
                    ));
                    continue;
                }
                return Err(Error::failed(format!(
                    "index `{}` on {} is closed, so its documents cannot be read; open it \
                     (`POST /{}/_open`) or leave it out of `indices`",
                    row.index,
                    es.url(),
                    row.index
                )));
            }
            matched += 1;
            if !picked.contains(&row.index) {
                picked.push(row.index);
            }
        }
        if matched == 0 {
            return Err(Error::not_found(format!(
                "index pattern `{pattern}` matches no index on {}",
                es.url()
            )));
        }
    }
    picked.sort();
    if picked.is_empty() {
        return Err(Error::not_found(format!(
            "`indices` = {patterns:?} leaves no index to dump on {}",
            es.url()
        )));
    }
    Ok(picked)
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
/// named (not yet written).
fn read_metadata(es: &Es, index: &str, taken: &[String]) -> Result<IndexDump> {
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
    Ok(IndexDump {
        name: index.to_owned(),
        documents: 0,
        artifact: documents_artifact(index, taken),
        settings: restorable_settings(&info.settings),
        mappings: if info.mappings.is_null() {
            Value::Object(Map::new())
        } else {
            info.mappings
        },
        aliases: info.aliases,
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

/// An open scroll, cleared (`DELETE /_search/scroll`) when dropped: after
/// the last page, and on every error path.
struct Scroll<'a> {
    es: &'a Es,
    id: Option<String>,
}

impl Drop for Scroll<'_> {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let request = self.es.request(Method::Delete, "/_search/scroll");
        let cleared = request
            .json(&json!({ "scroll_id": [id] }))
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

/// Stream the documents of `dump.name` into artifact `dump.artifact`, page
/// by page; returns how many were written.
fn dump_documents(
    es: &Es,
    params: &Params,
    dump: &IndexDump,
    expected: u64,
    progress: &mut Progress,
) -> Result<u64> {
    let index = dump.name.as_str();
    let mut out = storage::create(&dump.artifact)?;
    let mut scroll = Scroll { es, id: None };
    let search = es
        .request(
            Method::Post,
            &format!("/{}/_search?scroll={}", encode(index), params.scroll),
        )
        .json(&json!({ "size": params.batch_size, "sort": ["_doc"] }))?;
    let mut body = es
        .send_retrying(&search)
        .with_context(|| format!("starting to read index `{index}`"))?
        .body;
    let mut read: u64 = 0;
    loop {
        let mut page: Page = serde_json::from_slice(&body).map_err(|e| {
            Error::failed(format!(
                "a search page of index `{index}` is not the expected JSON: {e}"
            ))
        })?;
        let page_scroll = page.scroll_id.take();
        if page_scroll.is_some() {
            scroll.id.clone_from(&page_scroll);
        }
        if let Some(shards) = &page.shards
            && shards.failed > 0
        {
            let problem = shards
                .failures
                .first()
                .map(|f| EsProblem::parse(json!({ "error": f["reason"] }).to_string().as_bytes()))
                .map_or_else(|| "no reason given".to_owned(), |p| p.to_string());
            return Err(scroll_failure(es, params, index, read, expected, &problem));
        }
        if page.timed_out {
            return Err(Error::failed(format!(
                "reading index `{index}` timed out on Elasticsearch after {read} documents; \
                 the page would be incomplete"
            )));
        }
        if page.hits.hits.is_empty() {
            break;
        }
        let n = page.hits.hits.len() as u64;
        let Some(scroll_id) = page_scroll else {
            return Err(Error::failed(format!(
                "a search page of index `{index}` has no `_scroll_id`"
            )));
        };
        // Ask for the next page now: the cluster prepares it while this one
        // is written. (Dropped unanswered on an error, before the scroll is
        // cleared.)
        let next_request = es
            .request(Method::Post, "/_search/scroll")
            .json(&json!({ "scroll": params.scroll, "scroll_id": scroll_id }))?;
        let next = es.start(&next_request);
        for hit in &page.hits.hits {
            let source = hit.source.ok_or_else(|| {
                Error::failed(format!(
                    "document `{}` of index `{index}` has no `_source` (is `_source` disabled \
                     in its mappings?); such an index cannot be dumped, only snapshotted",
                    hit.id
                ))
            })?;
            write_line(&mut out, &hit.id, hit.routing.as_deref(), source)
                .with_context(|| format!("writing artifact `{}`", dump.artifact))?;
        }
        drop(page);
        read += n;
        progress.advance(n);

        let first = next.and_then(|pending| es.wait(pending));
        let response = es
            .retry_after(&next_request, first)
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
        body = response.body;
    }
    drop(scroll);
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
             documents: {problem}",
            es.url()
        ))
    }
}

/// The backup: everything into the snapshot, or an error and nothing kept.
pub fn backup(params: &Params) -> Result<Value> {
    let es = params.client();
    let started = time::now_ms();
    let version = cluster_version(&es)?;
    let names = resolve_indices(&es, &params.indices)?;
    log::info(format!(
        "dumping {} index(es) from {}: {}",
        names.len(),
        es.url(),
        names.join(", ")
    ));

    let mut dumps: Vec<IndexDump> = Vec::with_capacity(names.len());
    let mut expected = Vec::with_capacity(names.len());
    for name in &names {
        let taken: Vec<String> = dumps.iter().map(|d| d.artifact.clone()).collect();
        dumps.push(read_metadata(&es, name, &taken)?);
        expected.push(count(&es, name).with_context(|| format!("counting index `{name}`"))?);
    }
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
                "dumped index `{}`: {} documents ({:.0}/s)",
                dump.name,
                dump.documents,
                dump.documents as f64 / secs
            ),
            &[("artifact", &dump.artifact)],
        );
        if dump.documents != expected {
            log::warn(format!(
                "index `{}` had {expected} documents when the dump started and {} were read: \
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
        version,
        indices: dumps,
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
        "indices": counts,
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
