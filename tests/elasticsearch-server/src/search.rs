//! `_search`, scrolls and `_count`.
//!
//! Queries: `match_all`, `match_none` and `ids`; anything else is a 400 (never silently ignored).
//! A scroll is a point-in-time view: it holds the matching documents as they were when it began.
//! Pages are written from the stored source bytes without re-parsing them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use crate::App;
use crate::error::EsError;
use crate::store::{Doc, Expand};
use crate::util::{param_bool, parse_time_value, push_json_str, random_u64};

/// Open scroll contexts.
#[derive(Default)]
pub struct Scrolls {
    map: HashMap<u64, ScrollCtx>,
    next: u64,
}

struct ScrollCtx {
    token: u64,
    names: Arc<Vec<Arc<str>>>,
    hits: Arc<Vec<(u32, Arc<Doc>)>>,
    cursor: usize,
    view: View,
    keep_alive: Duration,
    expires: Instant,
}

/// How hits are rendered.
#[derive(Clone, Copy)]
struct View {
    size: usize,
    shards: u32,
    sorted: bool,
    source: bool,
    version: bool,
    seq_no: bool,
    total_as_int: bool,
    /// Whether hits carry `"_type": "_doc"` (7.x).
    types: bool,
}

/// An injected partial result.
#[derive(Clone, Copy, PartialEq)]
enum Partial {
    Whole,
    ShardFailed,
    TimedOut,
}

impl Partial {
    fn take(app: &App) -> Partial {
        if app.faults.take_shard_failure() {
            Partial::ShardFailed
        } else if app.faults.take_search_timeout() {
            Partial::TimedOut
        } else {
            Partial::Whole
        }
    }

    /// How many of `n` hits a partial page keeps.
    fn keep(self, n: usize) -> usize {
        if self == Partial::Whole { n } else { n / 2 }
    }
}

impl Scrolls {
    pub fn open(&self) -> usize {
        self.map.len()
    }

    /// Drops contexts whose keep-alive ran out.
    pub fn sweep(&mut self, now: Instant) {
        self.map.retain(|_, c| c.expires > now);
    }

    pub fn clear(&mut self) -> usize {
        let n = self.map.len();
        self.map.clear();
        n
    }
}

const UNSUPPORTED_QUERIES: &[&str] = &[
    "bool",
    "term",
    "terms",
    "match",
    "match_phrase",
    "multi_match",
    "range",
    "exists",
    "prefix",
    "wildcard",
    "regexp",
    "fuzzy",
    "query_string",
    "simple_query_string",
    "nested",
    "constant_score",
    "function_score",
    "dis_max",
    "has_child",
    "has_parent",
    "geo_distance",
    "script",
    "more_like_this",
    "terms_set",
    "boosting",
    "match_bool_prefix",
    "match_phrase_prefix",
    "intervals",
    "pinned",
];

enum Filter {
    All,
    Nothing,
    Ids(HashSet<String>),
}

impl Filter {
    fn matches(&self, doc: &Doc) -> bool {
        match self {
            Filter::All => true,
            Filter::Nothing => false,
            Filter::Ids(ids) => ids.contains(&*doc.id),
        }
    }
}

fn parse_query(q: &Value) -> Result<Filter, EsError> {
    let Some(obj) = q.as_object() else {
        return Err(EsError::parsing(
            "[_na] query malformed, must start with start_object",
        ));
    };
    let mut entries = obj.iter();
    let Some((name, body)) = entries.next() else {
        return Ok(Filter::All);
    };
    if entries.next().is_some() {
        return Err(EsError::parsing(format!(
            "[{name}] malformed query, expected [END_OBJECT] but found [FIELD_NAME]"
        )));
    }
    match name.as_str() {
        "match_all" => Ok(Filter::All),
        "match_none" => Ok(Filter::Nothing),
        "ids" => {
            let values = body
                .get("values")
                .and_then(Value::as_array)
                .ok_or_else(|| EsError::parsing("[ids] requires [values]"))?;
            Ok(Filter::Ids(
                values
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect(),
            ))
        }
        known if UNSUPPORTED_QUERIES.contains(&known) => Err(EsError::parsing(format!(
            "query [{known}] is not supported by the cairn Elasticsearch test server (only match_all, match_none and ids are)"
        ))),
        other => Err(EsError::parsing(format!("unknown query [{other}]"))
            .with("line", 1)
            .with("col", 1)
            .caused_by(EsError::new(
                400,
                "named_object_not_found_exception",
                format!("[1:1] unknown field [{other}]"),
            ))),
    }
}

/// Whether the sort given is one we honour (`_doc`, `_score`); `Ok(true)` when a sort was given.
fn parse_sort(sort: &Value) -> Result<bool, EsError> {
    let items: Vec<&Value> = match sort {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut sorted = false;
    for item in items {
        let field = match item {
            Value::String(s) => s.split(':').next().unwrap_or_default().to_string(),
            Value::Object(o) if o.len() == 1 => o.keys().next().expect("one").clone(),
            _ => return Err(EsError::parsing("malformed sort")),
        };
        match field.as_str() {
            "_doc" => sorted = true,
            "_score" => {}
            other => {
                return Err(EsError::illegal_argument(format!(
                    "sorting by [{other}] is not supported by the cairn Elasticsearch test server (only _doc and _score are)"
                )));
            }
        }
    }
    Ok(sorted)
}

struct Request {
    filter: Filter,
    size: usize,
    from: usize,
    scroll: Option<Duration>,
    slice: Option<(u64, u64)>,
    track_total: Option<u64>,
    view: View,
}

fn parse_usize(name: &str, v: &Value) -> Result<usize, EsError> {
    match v {
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        EsError::illegal_argument(format!("[{name}] must be a non-negative number, got [{v}]"))
    })
}

fn parse_request(params: &HashMap<String, String>, body: &[u8]) -> Result<Request, EsError> {
    let body: Value = if body.trim_ascii().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| EsError::bad_json(&e))?
    };
    let Some(obj) = body.as_object() else {
        return Err(EsError::parsing("request body must be an object"));
    };
    let total_as_int = param_bool(params.get("rest_total_hits_as_int"), false);
    let mut req = Request {
        filter: Filter::All,
        size: 10,
        from: 0,
        scroll: None,
        slice: None,
        track_total: if total_as_int { None } else { Some(10_000) },
        view: View {
            size: 10,
            shards: 0,
            sorted: false,
            source: true,
            version: false,
            seq_no: false,
            total_as_int,
            types: true,
        },
    };
    for (key, value) in obj {
        match key.as_str() {
            "query" => req.filter = parse_query(value)?,
            "size" => req.size = parse_usize("size", value)?,
            "from" => req.from = parse_usize("from", value)?,
            "sort" => req.view.sorted = parse_sort(value)?,
            "_source" => match value {
                Value::Bool(b) => req.view.source = *b,
                _ => {
                    return Err(EsError::illegal_argument(
                        "_source filtering is not supported by the cairn Elasticsearch test server (only true/false)",
                    ));
                }
            },
            "track_total_hits" => {
                req.track_total = match value {
                    Value::Bool(true) => None,
                    Value::Bool(false) => Some(0),
                    other => Some(parse_usize("track_total_hits", other)? as u64),
                }
            }
            "version" => req.view.version = value.as_bool().unwrap_or(false),
            "seq_no_primary_term" => req.view.seq_no = value.as_bool().unwrap_or(false),
            "slice" => {
                let id = value.get("id").and_then(Value::as_u64);
                let max = value.get("max").and_then(Value::as_u64);
                match (id, max) {
                    (Some(id), Some(max)) if max > 1 && id < max => req.slice = Some((id, max)),
                    (Some(0), Some(1)) => {}
                    _ => {
                        return Err(EsError::illegal_argument(
                            "slice requires id < max and max > 1",
                        ));
                    }
                }
            }
            "stored_fields" => {
                if value == "_none_" {
                    req.view.source = false;
                }
            }
            "timeout" | "track_scores" | "stats" | "profile" | "explain" | "terminate_after" => {}
            other => {
                return Err(EsError::parsing(format!(
                    "search body key [{other}] is not supported by the cairn Elasticsearch test server"
                )));
            }
        }
    }
    if let Some(s) = params.get("size") {
        req.size = parse_usize("size", &Value::String(s.clone()))?;
    }
    if let Some(f) = params.get("from") {
        req.from = parse_usize("from", &Value::String(f.clone()))?;
    }
    if let Some(sort) = params.get("sort") {
        req.view.sorted = parse_sort(&Value::Array(
            sort.split(',')
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ))?;
    }
    if let Some(src) = params.get("_source") {
        req.view.source = src != "false";
    }
    if let Some(q) = params.get("q") {
        if q != "*" && q != "*:*" {
            return Err(EsError::parsing(format!(
                "query string [q={q}] is not supported by the cairn Elasticsearch test server"
            )));
        }
    }
    if let Some(t) = params.get("track_total_hits") {
        req.track_total = match t.as_str() {
            "true" => None,
            "false" => Some(0),
            n => Some(
                n.parse()
                    .map_err(|_| EsError::illegal_argument("bad track_total_hits"))?,
            ),
        };
    }
    if let Some(scroll) = params.get("scroll") {
        req.scroll = Some(parse_time_value("scroll", scroll)?);
        req.track_total = None;
    }
    req.view.size = req.size;
    Ok(req)
}

/// Writes a search response (first page or scroll page).
#[allow(clippy::too_many_arguments)]
fn write_response(
    scroll_id: Option<&str>,
    took: u128,
    partial: Partial,
    view: View,
    total: usize,
    track_total: Option<u64>,
    names: &[Arc<str>],
    hits: &[(u32, Arc<Doc>)],
    first_pos: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        256 + hits
            .iter()
            .map(|(_, d)| d.source.len() + d.id.len() + 96)
            .sum::<usize>(),
    );
    out.push(b'{');
    if let Some(id) = scroll_id {
        out.extend_from_slice(b"\"_scroll_id\":");
        push_json_str(&mut out, id);
        out.push(b',');
    }
    let s = view.shards.max(1);
    let timed_out = partial == Partial::TimedOut;
    if partial == Partial::ShardFailed {
        out.extend_from_slice(
            format!(
                "\"took\":{took},\"timed_out\":false,\"_shards\":{{\"total\":{s},\"successful\":{},\"skipped\":0,\"failed\":1,\"failures\":[{{\"shard\":0,\"index\":\"{}\",\"node\":\"cairn-test-node-id\",\"reason\":{{\"type\":\"node_disconnected_exception\",\"reason\":\"[cairn-test-node][127.0.0.1:9300][indices:data/read/search[phase/query]] disconnected (fault injected by the cairn test server)\"}}}}]}},\"hits\":{{",
                s - 1,
                names.first().map(|n| n.as_ref()).unwrap_or("_na_")
            )
            .as_bytes(),
        );
    } else {
        out.extend_from_slice(
            format!(
                "\"took\":{took},\"timed_out\":{timed_out},\"_shards\":{{\"total\":{s},\"successful\":{s},\"skipped\":0,\"failed\":0}},\"hits\":{{"
            )
            .as_bytes(),
        );
    }
    match (view.total_as_int, track_total) {
        (true, _) => out.extend_from_slice(format!("\"total\":{total},").as_bytes()),
        (false, Some(0)) => {}
        (false, Some(cap)) if total as u64 > cap => out.extend_from_slice(
            format!("\"total\":{{\"value\":{cap},\"relation\":\"gte\"}},").as_bytes(),
        ),
        (false, _) => out.extend_from_slice(
            format!("\"total\":{{\"value\":{total},\"relation\":\"eq\"}},").as_bytes(),
        ),
    }
    let score: &[u8] = if view.sorted || hits.is_empty() {
        b"null"
    } else {
        b"1.0"
    };
    out.extend_from_slice(b"\"max_score\":");
    out.extend_from_slice(if view.sorted || total == 0 {
        b"null"
    } else {
        b"1.0"
    });
    out.extend_from_slice(b",\"hits\":[");
    for (i, (index, doc)) in hits.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"_index\":");
        push_json_str(&mut out, &names[*index as usize]);
        if view.types {
            out.extend_from_slice(b",\"_type\":\"_doc\"");
        }
        out.extend_from_slice(b",\"_id\":");
        push_json_str(&mut out, &doc.id);
        if view.version {
            out.extend_from_slice(format!(",\"_version\":{}", doc.version).as_bytes());
        }
        if view.seq_no {
            out.extend_from_slice(
                format!(",\"_seq_no\":{},\"_primary_term\":1", doc.seq_no).as_bytes(),
            );
        }
        out.extend_from_slice(b",\"_score\":");
        out.extend_from_slice(score);
        if let Some(r) = &doc.routing {
            out.extend_from_slice(b",\"_routing\":");
            push_json_str(&mut out, r);
        }
        if view.source {
            out.extend_from_slice(b",\"_source\":");
            out.extend_from_slice(&doc.source);
        }
        if view.sorted {
            out.extend_from_slice(format!(",\"sort\":[{}]", first_pos + i).as_bytes());
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}}");
    out
}

fn encode_scroll_id(key: u64, token: u64) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(format!("queryAndFetch;cairn;{key};{token:016x}"))
}

/// Decodes a scroll id to (key, token); `Err` when it is not one of ours at all.
fn decode_scroll_id(id: &str) -> Result<(u64, u64), EsError> {
    let bad = || {
        EsError::illegal_argument("Cannot parse scroll id")
            .caused_by(EsError::illegal_argument("invalid scroll id"))
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(id.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.split(';');
    if parts.next() != Some("queryAndFetch") || parts.next() != Some("cairn") {
        return Err(bad());
    }
    let key = parts.next().and_then(|k| k.parse().ok()).ok_or_else(bad)?;
    let token = parts
        .next()
        .and_then(|t| u64::from_str_radix(t, 16).ok())
        .ok_or_else(bad)?;
    Ok((key, token))
}

fn max_keep_alive(app: &App) -> Duration {
    let state = app.state();
    let key = "search.max_keep_alive";
    state
        .transient
        .get(key)
        .or_else(|| state.persistent.get(key))
        .and_then(Value::as_str)
        .and_then(|v| parse_time_value(key, v).ok())
        .unwrap_or(Duration::from_secs(86_400))
}

fn check_keep_alive(app: &App, keep: Duration, text: &str) -> Result<(), EsError> {
    let max = max_keep_alive(app);
    if keep > max {
        return Err(EsError::illegal_argument(format!(
            "Keep alive for request ({text}) is too large. It must be less than ({}s). This limit can be set by changing the [search.max_keep_alive] cluster level setting.",
            max.as_secs()
        )));
    }
    Ok(())
}

/// Closed indices cannot be read (400 `index_closed_exception`); red ones fail every shard.
pub fn check_readable(state: &crate::store::State, names: &[String]) -> Result<(), EsError> {
    for n in names {
        let index = &state.indices[n];
        if index.closed {
            return Err(EsError::index_closed(n, &index.uuid));
        }
        if !index.allocated(state.flavor) {
            let mut e = EsError::new(503, "search_phase_execution_exception", "all shards failed")
                .with("phase", "query")
                .with("grouped", true)
                .with("failed_shards", serde_json::json!([]));
            e.root_cause = Some(Vec::new());
            return Err(e);
        }
    }
    Ok(())
}

/// `GET|POST /{pattern}/_search`.
pub fn search(
    app: &App,
    expr: &str,
    params: &HashMap<String, String>,
    body: &[u8],
) -> Result<Vec<u8>, EsError> {
    let started = Instant::now();
    if app.faults.take_reject_search() {
        return Err(EsError::rejected("search request"));
    }
    let req = parse_request(params, body)?;
    if let Some(keep) = req.scroll {
        check_keep_alive(app, keep, &params["scroll"])?;
        if req.size > 10_000 {
            return Err(EsError::search_phase(
                EsError::illegal_argument(format!(
                    "Batch size is too large, size must be less than or equal to: [10000] but was [{}]. Scroll batch sizes cost as much memory as result windows so they are controlled by the [index.max_result_window] index level setting.",
                    req.size
                )),
                expr,
            ));
        }
    } else if req.from + req.size > 10_000 {
        return Err(EsError::search_phase(
            EsError::illegal_argument(format!(
                "Result window is too large, from + size must be less than or equal to: [10000] but was [{}]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.",
                req.from + req.size
            )),
            expr,
        ));
    }
    let mut view = req.view;
    let mut names: Vec<Arc<str>> = Vec::new();
    let partial = Partial::take(app);
    let mut hits: Vec<(u32, Arc<Doc>)> = Vec::new();
    let mut total = 0usize;
    {
        let state = app.state();
        view.types = state.flavor.has_types();
        let resolved = state.resolve(expr, Expand::STRICT.with_params(params))?;
        check_readable(&state, &resolved)?;
        let window = if req.scroll.is_some() {
            0..usize::MAX
        } else {
            req.from..req.from + req.size
        };
        let mut pos = 0u64;
        for name in &resolved {
            let index = &state.indices[name];
            view.shards += index.shards();
            let slot = names.len() as u32;
            names.push(index.name.clone());
            for doc in index.live_docs() {
                let this = pos;
                pos += 1;
                if let Some((id, max)) = req.slice
                    && this % max != id
                {
                    continue;
                }
                if !req.filter.matches(doc) {
                    continue;
                }
                if window.contains(&total) {
                    hits.push((slot, doc.clone()));
                }
                total += 1;
            }
        }
    }
    let Some(keep_alive) = req.scroll else {
        let kept = partial.keep(hits.len());
        hits.truncate(kept);
        return Ok(write_response(
            None,
            started.elapsed().as_millis(),
            partial,
            view,
            total,
            req.track_total,
            &names,
            &hits,
            req.from,
        ));
    };
    let names = Arc::new(names);
    let hits = Arc::new(hits);
    let first = hits.len().min(req.size);
    let token = random_u64();
    let id = {
        let mut scrolls = app.scrolls();
        if scrolls.map.len() >= 500 {
            return Err(EsError::search_phase(
                EsError::new(
                    500,
                    "exception",
                    "Trying to create too many scroll contexts. Must be less than or equal to: [500]. This limit can be set by changing the [search.max_open_scroll_context] setting.",
                ),
                expr,
            ));
        }
        scrolls.next += 1;
        let key = scrolls.next;
        scrolls.map.insert(
            key,
            ScrollCtx {
                token,
                names: names.clone(),
                hits: hits.clone(),
                cursor: first,
                view,
                keep_alive,
                expires: Instant::now() + keep_alive,
            },
        );
        encode_scroll_id(key, token)
    };
    Ok(write_response(
        Some(&id),
        started.elapsed().as_millis(),
        partial,
        view,
        total,
        None,
        &names,
        &hits[..partial.keep(first)],
        0,
    ))
}

/// Extracts scroll ids and keep-alive from a scroll request (body JSON, raw body or params).
fn scroll_request(
    params: &HashMap<String, String>,
    path_id: Option<&str>,
    body: &[u8],
) -> Result<(Vec<String>, Option<String>), EsError> {
    let mut ids = Vec::new();
    let mut keep = params.get("scroll").cloned();
    let trimmed = body.trim_ascii();
    if !trimmed.is_empty() {
        if trimmed.starts_with(b"{") {
            let v: Value = serde_json::from_slice(trimmed).map_err(|e| EsError::bad_json(&e))?;
            match v.get("scroll_id") {
                Some(Value::String(s)) => ids.push(s.clone()),
                Some(Value::Array(list)) => {
                    ids.extend(list.iter().filter_map(Value::as_str).map(str::to_string))
                }
                _ => {}
            }
            if let Some(s) = v.get("scroll").and_then(Value::as_str) {
                keep = Some(s.to_string());
            }
        } else {
            ids.push(String::from_utf8_lossy(trimmed).into_owned());
        }
    }
    if let Some(p) = params.get("scroll_id") {
        ids.extend(p.split(',').map(str::to_string));
    }
    if let Some(p) = path_id {
        ids.extend(p.split(',').map(str::to_string));
    }
    Ok((ids, keep))
}

/// `GET|POST /_search/scroll`.
pub fn scroll(
    app: &App,
    params: &HashMap<String, String>,
    path_id: Option<&str>,
    body: &[u8],
) -> Result<Vec<u8>, EsError> {
    let started = Instant::now();
    if app.faults.take_reject_search() {
        return Err(EsError::rejected("search request"));
    }
    let (ids, keep) = scroll_request(params, path_id, body)?;
    let Some(id) = ids.first() else {
        return Err(EsError::new(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: scrollId is missing;",
        ));
    };
    let keep = match &keep {
        Some(text) => {
            let d = parse_time_value("scroll", text)?;
            check_keep_alive(app, d, text)?;
            Some(d)
        }
        None => None,
    };
    let (key, token) = decode_scroll_id(id)?;
    if app.faults.scrolls_expire_now() {
        app.scrolls().clear();
    }
    let (names, hits, range, view) = {
        let mut scrolls = app.scrolls();
        let now = Instant::now();
        let ctx = match scrolls.map.get_mut(&key) {
            Some(ctx) if ctx.token == token && ctx.expires > now => ctx,
            Some(ctx) if ctx.token == token => {
                scrolls.map.remove(&key);
                return Err(EsError::search_context_missing(&key.to_string()));
            }
            _ => return Err(EsError::search_context_missing(&key.to_string())),
        };
        if let Some(k) = keep {
            ctx.keep_alive = k;
        }
        ctx.expires = now + ctx.keep_alive;
        let start = ctx.cursor;
        let end = (start + ctx.view.size).min(ctx.hits.len());
        ctx.cursor = end;
        (ctx.names.clone(), ctx.hits.clone(), start..end, ctx.view)
    };
    let partial = Partial::take(app);
    let shown = range.start..range.start + partial.keep(range.len());
    let out = write_response(
        Some(id),
        started.elapsed().as_millis(),
        partial,
        view,
        hits.len(),
        None,
        &names,
        &hits[shown],
        range.start,
    );
    if app.faults.scroll_page_served() {
        app.scrolls().clear();
    }
    Ok(out)
}

/// `DELETE /_search/scroll` (body or params) and `DELETE /_search/scroll/_all`.
/// Returns the body and whether anything was freed (ES answers 404 when nothing was).
pub fn clear_scroll(
    app: &App,
    params: &HashMap<String, String>,
    path_id: Option<&str>,
    body: &[u8],
) -> Result<(Value, bool), EsError> {
    let (ids, _) = scroll_request(params, path_id, body)?;
    if ids.is_empty() {
        return Err(EsError::new(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: no scroll ids specified;",
        ));
    }
    let mut freed = 0;
    if ids.iter().any(|i| i == "_all") {
        freed = app.scrolls().clear();
    } else {
        let decoded: Vec<(u64, u64)> = ids
            .iter()
            .map(|i| decode_scroll_id(i))
            .collect::<Result<_, _>>()?;
        let mut scrolls = app.scrolls();
        let now = Instant::now();
        for (key, token) in decoded {
            if let Some(ctx) = scrolls.map.get(&key)
                && ctx.token == token
            {
                if ctx.expires > now {
                    freed += 1;
                }
                scrolls.map.remove(&key);
            }
        }
    }
    Ok((
        serde_json::json!({ "succeeded": true, "num_freed": freed }),
        freed > 0,
    ))
}

/// `GET|POST /{pattern}/_count`.
pub fn count(
    app: &App,
    expr: &str,
    params: &HashMap<String, String>,
    body: &[u8],
) -> Result<Value, EsError> {
    let body: Value = if body.trim_ascii().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| EsError::bad_json(&e))?
    };
    let filter = match body.get("query") {
        Some(q) => parse_query(q)?,
        None => Filter::All,
    };
    if let Some(key) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "query"))
    {
        return Err(EsError::parsing(format!(
            "request does not support [{key}]"
        )));
    }
    let state = app.state();
    let resolved = state.resolve(expr, Expand::STRICT.with_params(params))?;
    check_readable(&state, &resolved)?;
    let mut count = 0;
    let mut shards = 0;
    for name in &resolved {
        let index = &state.indices[name];
        shards += index.shards();
        count += match filter {
            Filter::All => index.doc_count(),
            _ => index.live_docs().filter(|d| filter.matches(d)).count(),
        };
    }
    Ok(serde_json::json!({
        "count": count,
        "_shards": { "total": shards, "successful": shards, "skipped": 0, "failed": 0 }
    }))
}
