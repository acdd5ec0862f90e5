//! `_bulk` and the single-document write APIs (index, create, update, delete).
//!
//! A bulk body is read line by line; sources are checked against the mapping (dynamic mapping
//! included) and stored as the bytes sent. Failures are per item, as in ES.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::time::Instant;

use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use crate::App;
use crate::error::EsError;
use crate::mapping;
use crate::store::{State, Written};
use crate::util::{new_uuid, push_json_str};

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Action {
    Index,
    Create,
    Update,
    Delete,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Index => "index",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// One write, parsed but not applied.
pub struct Op {
    pub action: Action,
    pub index: Option<String>,
    pub id: Option<String>,
    pub routing: Option<String>,
    /// For index/create: the source bytes; for update: the request body. Parsed when applied, so
    /// a large bulk never holds thousands of parsed documents at once.
    pub source: Option<Source>,
}

/// The outcome of one write.
pub struct ItemResult {
    pub action: Action,
    pub index: String,
    pub id: String,
    pub outcome: Result<(Written, &'static str, u16), EsError>,
}

/// The common shape of an action line, parsed without building a `Value` (the fast path; any
/// line it does not fit goes through the general parser, which also words the errors).
#[derive(serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum ActionLine<'a> {
    Index(#[serde(borrow)] Meta<'a>),
    Create(#[serde(borrow)] Meta<'a>),
    Update(#[serde(borrow)] Meta<'a>),
    Delete(#[serde(borrow)] Meta<'a>),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta<'a> {
    #[serde(borrow, rename = "_index")]
    index: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "_id")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, alias = "_routing")]
    routing: Option<Cow<'a, str>>,
    #[serde(rename = "_type")]
    _type: Option<IgnoredAny>,
    #[serde(rename = "retry_on_conflict")]
    _retry: Option<IgnoredAny>,
}

fn fast_action(line: &[u8]) -> Option<(Action, Meta<'_>)> {
    Some(match serde_json::from_slice::<ActionLine>(line).ok()? {
        ActionLine::Index(m) => (Action::Index, m),
        ActionLine::Create(m) => (Action::Create, m),
        ActionLine::Update(m) => (Action::Update, m),
        ActionLine::Delete(m) => (Action::Delete, m),
    })
}

fn bad_line(n: usize, what: String) -> EsError {
    EsError::illegal_argument(format!("Malformed action/metadata line [{n}], {what}"))
}

/// Parses an NDJSON bulk body.
pub fn parse_bulk(
    body: &[u8],
    default_index: Option<&str>,
    default_routing: Option<&str>,
) -> Result<Vec<Op>, EsError> {
    if !body.is_empty() && !body.ends_with(b"\n") {
        return Err(EsError::illegal_argument(
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    let mut ops = Vec::new();
    let mut lines = body.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let line_no = n + 1;
        if let Some((action, meta)) = fast_action(line) {
            let mut op = Op {
                action,
                index: meta
                    .index
                    .map(Cow::into_owned)
                    .or_else(|| default_index.map(str::to_string)),
                id: meta.id.map(Cow::into_owned),
                routing: meta
                    .routing
                    .map(Cow::into_owned)
                    .or_else(|| default_routing.map(str::to_string)),
                source: None,
            };
            if action != Action::Delete {
                op.source = Some(source_line(lines.next(), action, line_no)?);
            }
            ops.push(op);
            continue;
        }
        let meta: Map<String, Value> = serde_json::from_slice(line).map_err(|_| {
            bad_line(
                line_no,
                "expected START_OBJECT or END_OBJECT but found [VALUE_STRING]".into(),
            )
        })?;
        if meta.len() != 1 {
            return Err(bad_line(line_no, "expected a single action".into()));
        }
        let (name, params) = meta.iter().next().expect("one entry");
        let action = match name.as_str() {
            "index" => Action::Index,
            "create" => Action::Create,
            "update" => Action::Update,
            "delete" => Action::Delete,
            other => {
                return Err(bad_line(
                    line_no,
                    format!(
                        "expected field [create], [delete], [index] or [update] but found [{other}]"
                    ),
                ));
            }
        };
        let Some(params) = params.as_object() else {
            return Err(bad_line(
                line_no,
                "expected START_OBJECT but found [VALUE_STRING]".into(),
            ));
        };
        let mut op = Op {
            action,
            index: default_index.map(str::to_string),
            id: None,
            routing: default_routing.map(str::to_string),
            source: None,
        };
        for (k, v) in params {
            let text = || match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            };
            match k.as_str() {
                "_index" => op.index = text(),
                "_id" => op.id = text(),
                "routing" | "_routing" => op.routing = text(),
                "_type" | "version" | "version_type" | "if_seq_no" | "if_primary_term"
                | "pipeline" | "require_alias" | "retry_on_conflict" | "_retry_on_conflict"
                | "_source" | "dynamic_templates" => {}
                other => {
                    return Err(EsError::illegal_argument(format!(
                        "Action/metadata line [{line_no}] contains an unknown parameter [{other}]"
                    )));
                }
            }
        }
        if action != Action::Delete {
            op.source = Some(source_line(lines.next(), action, line_no)?);
        }
        ops.push(op);
    }
    if ops.is_empty() {
        return Err(EsError::new(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        ));
    }
    Ok(ops)
}

type Source = Box<[u8]>;

fn source_line(
    next: Option<(usize, &[u8])>,
    action: Action,
    line_no: usize,
) -> Result<Source, EsError> {
    let source = match next {
        Some((_, l)) if !l.trim_ascii().is_empty() => l.trim_ascii(),
        _ => {
            return Err(EsError::new(
                400,
                "action_request_validation_exception",
                format!(
                    "Validation Failed: 1: source is missing for the {} at line [{line_no}];",
                    action.name()
                ),
            ));
        }
    };
    Ok(Box::from(source))
}

fn auto_create_allowed(state: &State) -> bool {
    let key = "action.auto_create_index";
    let value = state
        .transient
        .get(key)
        .or_else(|| state.persistent.get(key));
    value.and_then(Value::as_str) != Some("false")
}

/// What one write may do, beyond the state: injected faults and the caller's privileges.
#[derive(Clone, Copy, Default)]
pub struct Ctx<'a> {
    /// Reject this item with 429.
    pub reject: bool,
    /// Acknowledge this item without keeping it (lost acknowledged write).
    pub drop: bool,
    /// The caller (None: security off).
    pub principal: Option<&'a crate::security::Principal>,
}

/// Applies one write to the state.
pub fn apply(state: &mut State, op: Op, ctx: Ctx<'_>) -> ItemResult {
    let reject = ctx.reject;
    let target_name = op.index.clone().unwrap_or_default();
    let mut result = ItemResult {
        action: op.action,
        index: target_name.clone(),
        id: op.id.clone().unwrap_or_default(),
        outcome: Err(EsError::illegal_argument("unreachable")),
    };
    result.outcome = (|| {
        let Some(name) = op.index.as_deref() else {
            return Err(EsError::new(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;",
            ));
        };
        if reject {
            return Err(EsError::rejected(
                "coordinating operation [shard_detail=[cairn-test]]",
            ));
        }
        if let Some(p) = ctx.principal {
            let (privilege, action) = match op.action {
                Action::Index => ("index", "indices:data/write/index"),
                Action::Create => ("create_doc", "indices:data/write/index"),
                Action::Update => ("index", "indices:data/write/update"),
                Action::Delete => ("delete", "indices:data/write/delete"),
            };
            if !p.role.has_index(name, privilege) {
                return Err(crate::security::index_denied(p, privilege, action, name));
            }
            if state.write_target(name)?.is_none() && !p.role.has_index(name, "create_index") {
                return Err(crate::security::index_denied(
                    p,
                    "create_index",
                    "indices:admin/auto_create",
                    name,
                ));
            }
        }
        let is_stream = state.data_streams.contains_key(name)
            || (state.write_target(name)?.is_none() && state.data_stream_template(name).is_some());
        if is_stream && op.action != Action::Create {
            return Err(EsError::illegal_argument(
                "only write ops with an op_type of create are allowed in data streams",
            ));
        }
        let index_name = match state.write_target(name)? {
            Some(n) => n,
            None if op.action == Action::Delete
                || op.action == Action::Update && !is_upsert(&op) =>
            {
                return Err(EsError::index_not_found(name));
            }
            None if !auto_create_allowed(state) => {
                let mut e = EsError::index_not_found(name);
                e.reason =
                    format!("no such index [{name}] and [action.auto_create_index] is [false]");
                return Err(e);
            }
            None => {
                state.auto_create(name)?;
                state
                    .write_target(name)?
                    .unwrap_or_else(|| name.to_string())
            }
        };
        result.index = index_name.clone();
        let flavor = state.flavor;
        let index = state.indices.get_mut(&index_name).expect("exists");
        if index.closed {
            return Err(EsError::index_closed(&index_name, &index.uuid));
        }
        if !index.allocated(flavor) {
            return Err(EsError::new(
                503,
                "unavailable_shards_exception",
                format!(
                    "[{index_name}][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[{index_name}][0]] containing [1] requests]"
                ),
            ));
        }
        let id = match op.id.as_deref() {
            Some(id) if id.len() > 512 => {
                return Err(EsError::new(
                    400,
                    "action_request_validation_exception",
                    format!(
                        "Validation Failed: 1: id [{id}] is too long, must be no longer than 512 bytes but was: {};",
                        id.len()
                    ),
                ));
            }
            Some(id) => id.to_string(),
            None if op.action == Action::Index || op.action == Action::Create => {
                new_uuid()[..20].to_string()
            }
            None => {
                return Err(EsError::new(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: id is missing;",
                ));
            }
        };
        result.id = id.clone();
        let routing = op.routing.as_deref();
        match op.action {
            Action::Delete => match index.delete(&id) {
                Some(w) => Ok((w, "deleted", 200)),
                None => Ok((
                    Written {
                        version: 1,
                        seq_no: index.seq_no(),
                        created: false,
                    },
                    "not_found",
                    404,
                )),
            },
            Action::Index | Action::Create => {
                let bytes = op.source.expect("sources read for index/create");
                // most documents fit the mapping as it is: checked without building a `Value`
                let doc = if mapping::fits_unchanged(&index.mappings, &bytes) {
                    None
                } else {
                    Some(
                        serde_json::from_slice::<Map<String, Value>>(&bytes).map_err(|e| {
                            EsError::mapper_parsing("failed to parse").caused_by(EsError::new(
                                400,
                                "json_parse_exception",
                                e.to_string(),
                            ))
                        })?,
                    )
                };
                if op.action == Action::Create
                    && let Some(existing) = index.get(&id)
                {
                    return Err(EsError::new(
                        409,
                        "version_conflict_engine_exception",
                        format!("[{id}]: version conflict, document already exists (current version [{}])", existing.version),
                    )
                    .with("index_uuid", index.uuid.as_str())
                    .with("shard", "0")
                    .with("index", index_name.as_str()));
                }
                if is_stream {
                    let has_ts = match &doc {
                        Some(d) => d.contains_key("@timestamp"),
                        None => serde_json::from_slice::<Map<String, Value>>(&bytes)
                            .map(|d| d.contains_key("@timestamp"))
                            .unwrap_or(false),
                    };
                    if !has_ts {
                        return Err(EsError::mapper_parsing(
                            "data stream timestamp field [@timestamp] is missing",
                        ));
                    }
                }
                if let Some(doc) = &doc {
                    mapping::index_document(&mut index.mappings, doc, &id)?;
                }
                if ctx.drop {
                    let w = Written {
                        version: 1,
                        seq_no: index.seq_no(),
                        created: true,
                    };
                    return Ok((w, "created", 201));
                }
                let w = index.put(&id, routing, bytes);
                let (result, status) = if w.created {
                    ("created", 201)
                } else {
                    ("updated", 200)
                };
                Ok((w, result, status))
            }
            Action::Update => {
                let raw = op.source.as_deref().expect("update bodies read");
                let body = serde_json::from_slice::<Map<String, Value>>(raw)
                    .map_err(|e| EsError::new(400, "x_content_parse_exception", e.to_string()))?;
                if body.contains_key("script") {
                    return Err(EsError::illegal_argument(
                        "scripted updates are not supported by the cairn Elasticsearch test server",
                    ));
                }
                let partial = body.get("doc").and_then(Value::as_object);
                let upsert_doc = if body.get("doc_as_upsert") == Some(&Value::Bool(true)) {
                    partial.cloned()
                } else {
                    body.get("upsert").and_then(Value::as_object).cloned()
                };
                let (new_doc, created) = match index.get(&id) {
                    Some(existing) => {
                        let mut current: Map<String, Value> =
                            serde_json::from_slice(&existing.source)
                                .expect("stored sources are JSON");
                        let before = current.clone();
                        if let Some(p) = partial {
                            deep_merge(&mut current, p);
                        }
                        if current == before {
                            let w = Written {
                                version: existing.version,
                                seq_no: existing.seq_no,
                                created: false,
                            };
                            return Ok((w, "noop", 200));
                        }
                        (current, false)
                    }
                    None => match upsert_doc {
                        Some(doc) => (doc, true),
                        None => {
                            return Err(EsError::new(
                                404,
                                "document_missing_exception",
                                format!("[_doc][{id}]: document missing"),
                            )
                            .with("index_uuid", index.uuid.as_str())
                            .with("shard", "0")
                            .with("index", index_name.as_str()));
                        }
                    },
                };
                mapping::index_document(&mut index.mappings, &new_doc, &id)?;
                let bytes = serde_json::to_vec(&new_doc)
                    .expect("serialisable")
                    .into_boxed_slice();
                let w = index.put(&id, routing, bytes);
                Ok((
                    w,
                    if created { "created" } else { "updated" },
                    if created { 201 } else { 200 },
                ))
            }
        }
    })();
    result
}

fn is_upsert(op: &Op) -> bool {
    match op
        .source
        .as_deref()
        .map(serde_json::from_slice::<Map<String, Value>>)
    {
        Some(Ok(body)) => {
            body.contains_key("upsert") || body.get("doc_as_upsert") == Some(&Value::Bool(true))
        }
        _ => false,
    }
}

fn deep_merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        match (target.get_mut(k), v) {
            (Some(Value::Object(t)), Value::Object(p)) => deep_merge(t, p),
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Writes one item's body (what a single-document API returns, and what a bulk item wraps).
pub fn write_item_body(
    out: &mut Vec<u8>,
    item: &ItemResult,
    replicas: u32,
    in_bulk: bool,
    types: bool,
) {
    out.extend_from_slice(b"{\"_index\":");
    push_json_str(out, &item.index);
    if types {
        out.extend_from_slice(b",\"_type\":\"_doc\"");
    }
    out.extend_from_slice(b",\"_id\":");
    push_json_str(out, &item.id);
    match &item.outcome {
        Ok((w, result, status)) => {
            write!(
                out,
                ",\"_version\":{},\"result\":\"{result}\",\"_shards\":{{\"total\":{},\"successful\":1,\"failed\":0}},\"_seq_no\":{},\"_primary_term\":1",
                w.version,
                1 + replicas,
                w.seq_no
            )
            .expect("writing to a Vec");
            if in_bulk {
                write!(out, ",\"status\":{status}").expect("writing to a Vec");
            }
            out.push(b'}');
        }
        Err(e) => {
            write!(out, ",\"status\":{},\"error\":", e.status).expect("writing to a Vec");
            serde_json::to_writer(&mut *out, &e.object()).expect("vec");
            out.push(b'}');
        }
    }
}

/// `POST /_bulk`, `POST /{index}/_bulk`.
pub fn bulk(
    app: &App,
    path_index: Option<&str>,
    params: &HashMap<String, String>,
    body: &[u8],
    principal: Option<&crate::security::Principal>,
) -> Result<Vec<u8>, EsError> {
    let started = Instant::now();
    if app.faults.take_reject_bulk() {
        return Err(EsError::rejected("bulk request"));
    }
    let ops = parse_bulk(body, path_index, params.get("routing").map(String::as_str))?;
    let mut results = Vec::with_capacity(ops.len());
    // replicas of each index written (a bulk request seldom writes more than one)
    let mut replicas: Vec<(String, u32)> = Vec::new();
    let types;
    {
        let mut state = app.state();
        types = state.flavor.has_types();
        for op in ops {
            let ctx = Ctx {
                reject: app.faults.take_reject_bulk_item(),
                drop: matches!(op.action, Action::Index | Action::Create)
                    && app.faults.take_dropped_write(),
                principal,
            };
            let r = apply(&mut state, op, ctx);
            if !replicas.iter().any(|(name, _)| *name == r.index)
                && let Some(i) = state.indices.get(&r.index)
            {
                replicas.push((r.index.clone(), i.replicas()));
            }
            results.push(r);
        }
    }
    let errors = results.iter().any(|r| r.outcome.is_err());
    let mut out = Vec::with_capacity(results.len() * 180 + 64);
    out.extend_from_slice(
        format!(
            "{{\"took\":{},\"errors\":{errors},\"items\":[",
            started.elapsed().as_millis()
        )
        .as_bytes(),
    );
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(r.action.name().as_bytes());
        out.extend_from_slice(b"\":");
        write_item_body(
            &mut out,
            r,
            replicas
                .iter()
                .find(|(name, _)| *name == r.index)
                .map_or(1, |&(_, n)| n),
            true,
            types,
        );
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}
