//! The REST layer: authentication, fault injection, routing by method and path, ES-shaped
//! responses. Everything goes through one handler so unknown endpoints are logged, not lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::App;
use crate::bulk::{self, Action, Op};
use crate::error::EsError;
use crate::faults::FaultsRequest;
use crate::search;
use crate::snapshot;
use crate::store::{Expand, VERSION, unwrap_typed_mapping};
use crate::util::{param_bool, parse_time_value, render_settings, wildcard_match};

pub const WWW_AUTHENTICATE: &str = "Basic realm=\"security\" charset=\"UTF-8\"";

/// ES's `http.max_content_length` default.
const MAX_BODY: usize = 100 * 1024 * 1024;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

type Params = HashMap<String, String>;

fn respond(status: u16, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    h.insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    resp
}

fn json_resp(status: u16, v: &Value) -> Response {
    respond(status, serde_json::to_vec(v).expect("serialisable"))
}

fn err_resp(e: EsError) -> Response {
    let mut resp = json_resp(e.status, &e.body());
    if e.kind == "security_exception" && e.status == 401 {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(WWW_AUTHENTICATE),
        );
    }
    resp
}

fn result_json(r: Result<Value, EsError>) -> Response {
    match r {
        Ok(v) => json_resp(200, &v),
        Err(e) => err_resp(e),
    }
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_params(query: Option<&str>) -> Params {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(p, true), String::new()),
        })
        .collect()
}

fn parse_body(body: &[u8]) -> Result<Value, EsError> {
    if body.trim_ascii().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| EsError::bad_json(&e))
}

fn check_auth(app: &App, headers: &HeaderMap, uri: &Uri) -> Result<(), EsError> {
    let Some((user, password)) = &app.auth else {
        return Ok(());
    };
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(EsError::security(
            401,
            format!("missing authentication credentials for REST request [{target}]"),
        ));
    };
    let decoded = value
        .strip_prefix("Basic ")
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Err(EsError::security(
            401,
            format!("missing authentication credentials for REST request [{target}]"),
        ));
    };
    if u == user && p == password {
        Ok(())
    } else {
        Err(EsError::security(
            401,
            format!("unable to authenticate user [{u}] for REST request [{target}]"),
        ))
    }
}

async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let path = uri.path().to_string();
    if let Err(e) = check_auth(&app, &headers, &uri) {
        return err_resp(e);
    }
    let params = parse_params(uri.query());
    let resp = if let Some(status) = app.faults.take_request_failure(method.as_str(), &path) {
        err_resp(EsError::injected(status, method.as_str(), &path))
    } else {
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, false))
            .collect();
        dispatch(&app, &method, &path, &segs, &params, &body).await
    };
    if app.log_requests {
        let status = resp.status().as_u16();
        let shown = if status >= 400 && !body.is_empty() {
            format!(
                " body: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )
        } else {
            String::new()
        };
        eprintln!(
            "cairn-es-test-server: {method} {uri} -> {status} ({} bytes in, {} ms){shown}",
            body.len(),
            started.elapsed().as_millis()
        );
    }
    if method == Method::HEAD {
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    resp
}

fn unknown(method: &Method, path: &str) -> Response {
    eprintln!(
        "cairn-es-test-server: unsupported endpoint {method} {path} (not implemented by this test double)"
    );
    json_resp(
        400,
        &json!({ "error": format!("no handler found for uri [{path}] and method [{method}]"), "status": 400 }),
    )
}

async fn dispatch(
    app: &Arc<App>,
    method: &Method,
    path: &str,
    segs: &[String],
    params: &Params,
    body: &Bytes,
) -> Response {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let is_read = m == "GET" || m == "HEAD";
    match (m, s.as_slice()) {
        ("GET" | "HEAD", []) => json_resp(200, &root_info()),

        // ---- test-only endpoints (NOT Elasticsearch) --------------------------------
        ("POST" | "PUT", ["_cairn_test", "faults"]) => {
            match serde_json::from_slice::<FaultsRequest>(body) {
                Ok(req) => match app.faults.apply(req) {
                    Ok(()) => json_resp(200, &json!({ "acknowledged": true })),
                    Err(e) => err_resp(EsError::illegal_argument(e)),
                },
                Err(e) => err_resp(EsError::illegal_argument(format!("bad faults body: {e}"))),
            }
        }
        ("DELETE", ["_cairn_test", "faults"]) => {
            app.faults.clear();
            json_resp(200, &json!({ "acknowledged": true }))
        }
        ("GET", ["_cairn_test", "state"]) => {
            json_resp(200, &json!({ "open_scrolls": app.scrolls().open() }))
        }
        ("POST", ["_cairn_test", "seed"]) => match parse_body(body) {
            Ok(v) => match (v["index"].as_str(), v["docs"].as_u64()) {
                (Some(index), Some(n)) => match app.seed(index, n as usize) {
                    Ok(()) => json_resp(200, &json!({ "acknowledged": true })),
                    Err(e) => err_resp(e),
                },
                _ => err_resp(EsError::illegal_argument(
                    "seed needs {\"index\": NAME, \"docs\": COUNT}",
                )),
            },
            Err(e) => err_resp(e),
        },

        // ---- documents --------------------------------------------------------------
        ("POST" | "PUT", ["_bulk"]) => bytes_result(bulk::bulk(app, None, params, body)),
        ("POST" | "PUT", [index, "_bulk"]) => {
            bytes_result(bulk::bulk(app, Some(index), params, body))
        }
        ("POST", [index, "_doc"]) => write_doc(app, Action::Index, index, None, params, body),
        ("PUT" | "POST", [index, "_doc", id]) => {
            let action = if params.get("op_type").map(String::as_str) == Some("create") {
                Action::Create
            } else {
                Action::Index
            };
            write_doc(app, action, index, Some(id), params, body)
        }
        ("PUT" | "POST", [index, "_create", id]) => {
            write_doc(app, Action::Create, index, Some(id), params, body)
        }
        ("POST", [index, "_update", id]) => {
            write_doc(app, Action::Update, index, Some(id), params, body)
        }
        ("DELETE", [index, "_doc", id]) => {
            write_doc(app, Action::Delete, index, Some(id), params, body)
        }
        ("GET" | "HEAD", [index, "_doc", id]) => get_doc(app, index, id, false),
        ("GET" | "HEAD", [index, "_source", id]) => get_doc(app, index, id, true),

        // ---- search -----------------------------------------------------------------
        ("GET" | "POST", ["_search"]) => bytes_result(search::search(app, "_all", params, body)),
        ("GET" | "POST", ["_search", "scroll"]) => {
            bytes_result(search::scroll(app, params, None, body))
        }
        ("GET" | "POST", ["_search", "scroll", id]) => {
            bytes_result(search::scroll(app, params, Some(id), body))
        }
        ("DELETE", ["_search", "scroll"]) => clear_scroll(app, params, None, body),
        ("DELETE", ["_search", "scroll", id]) => clear_scroll(app, params, Some(id), body),
        ("GET" | "POST", [index, "_search"]) => {
            bytes_result(search::search(app, index, params, body))
        }
        ("GET" | "POST", ["_count"]) => result_json(search::count(app, "_all", params, body)),
        ("GET" | "POST", [index, "_count"]) => result_json(search::count(app, index, params, body)),
        ("GET" | "POST", ["_refresh" | "_flush"]) => shards_ok(app, "_all", params),
        ("GET" | "POST", [index, "_refresh" | "_flush"]) => shards_ok(app, index, params),

        // ---- aliases ----------------------------------------------------------------
        ("POST", ["_aliases"]) => match parse_body(body) {
            Ok(v) => result_json(
                app.state()
                    .update_aliases(&v)
                    .map(|()| json!({ "acknowledged": true })),
            ),
            Err(e) => err_resp(e),
        },
        ("GET" | "HEAD", ["_alias" | "_aliases"]) => {
            get_aliases(app, "_all", None, params, is_read)
        }
        ("GET" | "HEAD", ["_alias", names]) => {
            get_aliases(app, "_all", Some(names), params, is_read)
        }
        ("GET" | "HEAD", [index, "_alias" | "_aliases"]) => {
            get_aliases(app, index, None, params, is_read)
        }
        ("GET" | "HEAD", [index, "_alias" | "_aliases", names]) => {
            get_aliases(app, index, Some(names), params, is_read)
        }
        ("PUT" | "POST", [index, "_alias" | "_aliases", name]) => {
            let mut add = match parse_body(body) {
                Ok(Value::Object(o)) => o,
                Ok(_) => Map::new(),
                Err(e) => return err_resp(e),
            };
            add.insert("index".into(), json!(index));
            add.insert("alias".into(), json!(name));
            let actions = json!({ "actions": [{ "add": add }] });
            result_json(
                app.state()
                    .update_aliases(&actions)
                    .map(|()| json!({ "acknowledged": true })),
            )
        }
        ("DELETE", [index, "_alias" | "_aliases", name]) => {
            let actions = json!({ "actions": [{ "remove": { "index": index, "alias": name } }] });
            result_json(
                app.state()
                    .update_aliases(&actions)
                    .map(|()| json!({ "acknowledged": true })),
            )
        }

        // ---- mappings and settings ----------------------------------------------------
        ("GET", ["_mapping"]) => get_mappings(app, "_all", params),
        ("GET", [index, "_mapping"]) => get_mappings(app, index, params),
        ("PUT" | "POST", [index, "_mapping"]) => put_mapping(app, index, params, body),
        ("GET", ["_settings"]) => get_settings(app, "_all", None, params),
        ("GET", ["_settings", name]) => get_settings(app, "_all", Some(name), params),
        ("GET", [index, "_settings"]) => get_settings(app, index, None, params),
        ("GET", [index, "_settings", name]) => get_settings(app, index, Some(name), params),
        ("PUT", ["_settings"]) => put_settings(app, "_all", params, body),
        ("PUT", [index, "_settings"]) => put_settings(app, index, params, body),

        // ---- cat and cluster ----------------------------------------------------------
        ("GET", ["_cat", "indices"]) => cat_indices(app, "_all", params),
        ("GET", ["_cat", "indices", index]) => cat_indices(app, index, params),
        ("GET", ["_cat", "aliases"]) => cat_aliases(app, None, params),
        ("GET", ["_cat", "aliases", names]) => cat_aliases(app, Some(names), params),
        ("GET", ["_cluster", "settings"]) => cluster_settings(app, params),
        ("PUT", ["_cluster", "settings"]) => {
            match parse_body(body) {
                Ok(v) => result_json(app.state().update_cluster_settings(&v).map(
                    |(p, t)| json!({ "acknowledged": true, "persistent": p, "transient": t }),
                )),
                Err(e) => err_resp(e),
            }
        }
        ("GET", ["_cluster", "health"]) => cluster_health(app, "_all", params).await,
        ("GET", ["_cluster", "health", index]) => cluster_health(app, index, params).await,

        // ---- snapshots ----------------------------------------------------------------
        ("GET", ["_snapshot"]) => result_json(snapshot::get_repositories(app, None)),
        ("GET", ["_snapshot", "_status"]) => result_json(snapshot::status(app, None, None)),
        ("GET", ["_snapshot", repo]) => result_json(snapshot::get_repositories(app, Some(repo))),
        ("PUT" | "POST", ["_snapshot", repo]) => match parse_body(body) {
            Ok(v) => result_json(snapshot::put_repository(app, repo, &v)),
            Err(e) => err_resp(e),
        },
        ("DELETE", ["_snapshot", repo]) => result_json(snapshot::delete_repository(app, repo)),
        ("GET", ["_snapshot", repo, "_status"]) => {
            result_json(snapshot::status(app, Some(repo), None))
        }
        ("GET", ["_snapshot", repo, snap, "_status"]) => {
            result_json(snapshot::status(app, Some(repo), Some(snap)))
        }
        ("GET", ["_snapshot", repo, snap]) => result_json(snapshot::get(
            app,
            repo,
            snap,
            param_bool(params.get("ignore_unavailable"), false),
        )),
        ("PUT" | "POST", ["_snapshot", repo, snap]) => {
            let v = match parse_body(body) {
                Ok(v) => v,
                Err(e) => return err_resp(e),
            };
            let wait = param_bool(params.get("wait_for_completion"), false);
            match snapshot::create(app.clone(), repo, snap, wait, &v).await {
                Ok((status, v)) => json_resp(status, &v),
                Err(e) => err_resp(e),
            }
        }
        ("DELETE", ["_snapshot", repo, snap]) => {
            result_json(snapshot::delete(app.clone(), repo, snap).await)
        }
        ("POST", ["_snapshot", repo, snap, "_restore"]) => match parse_body(body) {
            Ok(v) => {
                let wait = param_bool(params.get("wait_for_completion"), false);
                result_json(snapshot::restore(app, repo, snap, wait, &v))
            }
            Err(e) => err_resp(e),
        },

        // ---- indices ------------------------------------------------------------------
        (_, [first, ..]) if first.starts_with('_') => unknown(method, path),
        ("PUT", [index]) => match parse_body(body) {
            Ok(v) => {
                let typed = param_bool(params.get("include_type_name"), false);
                result_json(app.state().create_index(index, &v, typed).map(|()| {
                    json!({ "acknowledged": true, "shards_acknowledged": true, "index": index })
                }))
            }
            Err(e) => err_resp(e),
        },
        ("HEAD", [index]) => {
            let opts = Expand::STRICT.with_params(params);
            match app.state().resolve(index, opts) {
                Ok(found) if !found.is_empty() => respond(200, Vec::new()),
                _ => respond(404, Vec::new()),
            }
        }
        ("GET", [index]) => get_indices(app, index, params),
        ("DELETE", [index]) => delete_indices(app, index, params),
        _ => unknown(method, path),
    }
}

fn bytes_result(r: Result<Vec<u8>, EsError>) -> Response {
    match r {
        Ok(b) => respond(200, b),
        Err(e) => err_resp(e),
    }
}

fn root_info() -> Value {
    json!({
        "name": "cairn-test-node",
        "cluster_name": "cairn-test",
        "cluster_uuid": "cairn-test-double-cluster-uuid",
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "build_type": "tar",
            "build_hash": "cairn-es-test-server",
            "build_date": "2022-01-28T08:36:04.875279988Z",
            "build_snapshot": false,
            "lucene_version": "8.11.1",
            "minimum_wire_compatibility_version": "6.8.0",
            "minimum_index_compatibility_version": "6.0.0-beta1"
        },
        "tagline": "You Know, for Search"
    })
}

fn write_doc(
    app: &App,
    action: Action,
    index: &str,
    id: Option<&str>,
    params: &Params,
    body: &Bytes,
) -> Response {
    let source = if action == Action::Delete {
        None
    } else {
        Some(Box::from(body.trim_ascii()))
    };
    let op = Op {
        action,
        index: Some(index.to_string()),
        id: id.map(str::to_string),
        routing: params.get("routing").cloned(),
        source,
    };
    let mut state = app.state();
    let item = bulk::apply(&mut state, op, false);
    let replicas = state
        .indices
        .get(&item.index)
        .map(|i| i.replicas())
        .unwrap_or(1);
    drop(state);
    match &item.outcome {
        Ok((_, _, status)) => {
            let mut out = Vec::new();
            bulk::write_item_body(&mut out, &item, replicas, false);
            respond(*status, out)
        }
        Err(e) => err_resp(e.clone()),
    }
}

fn get_doc(app: &App, index: &str, id: &str, source_only: bool) -> Response {
    let state = app.state();
    let names = match state.resolve(index, Expand::STRICT) {
        Ok(n) => n,
        Err(e) => return err_resp(e),
    };
    if names.len() != 1 {
        return err_resp(EsError::illegal_argument(format!(
            "alias [{index}] has more than one index associated with it [{}], can't execute a single index op",
            names.join(", ")
        )));
    }
    let idx = &state.indices[&names[0]];
    let Some(doc) = idx.get(id) else {
        if source_only {
            return err_resp(EsError::new(
                404,
                "resource_not_found_exception",
                format!("Document not found [{}]/[_doc]/[{id}]", names[0]),
            ));
        }
        return json_resp(
            404,
            &json!({ "_index": names[0], "_type": "_doc", "_id": id, "found": false }),
        );
    };
    if source_only {
        return respond(200, doc.source.to_vec());
    }
    let mut out = Vec::with_capacity(doc.source.len() + 160);
    out.extend_from_slice(b"{\"_index\":");
    crate::util::push_json_str(&mut out, &names[0]);
    out.extend_from_slice(b",\"_type\":\"_doc\",\"_id\":");
    crate::util::push_json_str(&mut out, &doc.id);
    out.extend_from_slice(
        format!(
            ",\"_version\":{},\"_seq_no\":{},\"_primary_term\":1",
            doc.version, doc.seq_no
        )
        .as_bytes(),
    );
    if let Some(r) = &doc.routing {
        out.extend_from_slice(b",\"_routing\":");
        crate::util::push_json_str(&mut out, r);
    }
    out.extend_from_slice(b",\"found\":true,\"_source\":");
    out.extend_from_slice(&doc.source);
    out.push(b'}');
    respond(200, out)
}

fn clear_scroll(app: &App, params: &Params, path_id: Option<&str>, body: &Bytes) -> Response {
    match search::clear_scroll(app, params, path_id, body) {
        Ok((v, freed)) => json_resp(if freed { 200 } else { 404 }, &v),
        Err(e) => err_resp(e),
    }
}

fn shards_ok(app: &App, expr: &str, params: &Params) -> Response {
    let state = app.state();
    match state.resolve(expr, Expand::STRICT.with_params(params)) {
        Ok(names) => {
            let (total, ok): (u32, u32) = names.iter().fold((0, 0), |(t, o), n| {
                let i = &state.indices[n];
                (t + i.shards() * (1 + i.replicas()), o + i.shards())
            });
            json_resp(
                200,
                &json!({ "_shards": { "total": total, "successful": ok, "failed": 0 } }),
            )
        }
        Err(e) => err_resp(e),
    }
}

fn get_aliases(
    app: &App,
    expr: &str,
    names: Option<&str>,
    params: &Params,
    _read: bool,
) -> Response {
    let state = app.state();
    let indices = match state.resolve(
        expr,
        Expand {
            ignore_unavailable: false,
            allow_no_indices: true,
        }
        .with_params(params),
    ) {
        Ok(i) => i,
        Err(e) => return err_resp(e),
    };
    let patterns: Option<Vec<&str>> = names.map(|n| n.split(',').collect());
    let mut out = Map::new();
    let mut seen: Vec<&str> = Vec::new();
    for name in &indices {
        let index = &state.indices[name];
        let mut aliases = Map::new();
        for (alias, props) in &index.aliases {
            let wanted = match &patterns {
                None => true,
                Some(p) => p.iter().any(|p| *p == "_all" || wildcard_match(p, alias)),
            };
            if wanted {
                aliases.insert(alias.clone(), props.clone());
                if let Some(p) = &patterns {
                    seen.extend(p.iter().filter(|p| wildcard_match(p, alias)));
                }
            }
        }
        if patterns.is_none() || !aliases.is_empty() {
            out.insert(name.clone(), json!({ "aliases": aliases }));
        }
    }
    if let Some(p) = &patterns {
        let missing: Vec<&&str> = p
            .iter()
            .filter(|p| !crate::util::has_wildcard(p) && **p != "_all" && !seen.contains(p))
            .collect();
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let word = if missing.len() == 1 {
                "alias"
            } else {
                "aliases"
            };
            out.insert("error".into(), json!(format!("{word} [{list}] missing")));
            out.insert("status".into(), json!(404));
            return json_resp(404, &Value::Object(out));
        }
    }
    json_resp(200, &Value::Object(out))
}

fn typed(mappings: &Map<String, Value>, include_type_name: bool) -> Value {
    if include_type_name && !mappings.is_empty() {
        json!({ "_doc": mappings })
    } else {
        Value::Object(mappings.clone())
    }
}

fn get_mappings(app: &App, expr: &str, params: &Params) -> Response {
    let state = app.state();
    let typed_names = param_bool(params.get("include_type_name"), false);
    match state.resolve(expr, Expand::STRICT.with_params(params)) {
        Ok(names) => {
            let out: Map<String, Value> = names
                .iter()
                .map(|n| {
                    (
                        n.clone(),
                        json!({ "mappings": typed(&state.indices[n].mappings, typed_names) }),
                    )
                })
                .collect();
            json_resp(200, &Value::Object(out))
        }
        Err(e) => err_resp(e),
    }
}

fn put_mapping(app: &App, expr: &str, params: &Params, body: &Bytes) -> Response {
    let v = match parse_body(body) {
        Ok(v) => v,
        Err(e) => return err_resp(e),
    };
    let incoming =
        match unwrap_typed_mapping(&v, param_bool(params.get("include_type_name"), false)) {
            Ok(m) => m,
            Err(e) => return err_resp(e),
        };
    let mut state = app.state();
    let names = match state.resolve(expr, Expand::STRICT.with_params(params)) {
        Ok(n) => n,
        Err(e) => return err_resp(e),
    };
    // All or nothing across the indices.
    let mut merged = Vec::new();
    for n in &names {
        let mut m = state.indices[n].mappings.clone();
        if let Err(e) = crate::mapping::merge(&mut m, &incoming) {
            return err_resp(e);
        }
        merged.push((n.clone(), m));
    }
    for (n, m) in merged {
        state.indices.get_mut(&n).expect("resolved").mappings = m;
    }
    json_resp(200, &json!({ "acknowledged": true }))
}

fn get_settings(app: &App, expr: &str, name: Option<&str>, params: &Params) -> Response {
    let state = app.state();
    let flat = param_bool(params.get("flat_settings"), false);
    match state.resolve(expr, Expand::STRICT.with_params(params)) {
        Ok(names) => {
            let mut out = Map::new();
            for n in names {
                let settings: BTreeMap<String, Value> = state.indices[&n]
                    .settings
                    .iter()
                    .filter(|(k, _)| {
                        name.is_none_or(|p| {
                            p.split(',').any(|p| {
                                wildcard_match(p, k) || wildcard_match(&format!("index.{p}"), k)
                            })
                        })
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if name.is_some() && settings.is_empty() {
                    continue;
                }
                out.insert(n, json!({ "settings": render_settings(&settings, flat) }));
            }
            json_resp(200, &Value::Object(out))
        }
        Err(e) => err_resp(e),
    }
}

fn put_settings(app: &App, expr: &str, params: &Params, body: &Bytes) -> Response {
    let v = match parse_body(body) {
        Ok(v) => v,
        Err(e) => return err_resp(e),
    };
    let mut state = app.state();
    let names = match state.resolve(expr, Expand::STRICT.with_params(params)) {
        Ok(n) => n,
        Err(e) => return err_resp(e),
    };
    result_json(
        state
            .update_settings(&names, &v)
            .map(|()| json!({ "acknowledged": true })),
    )
}

fn get_indices(app: &App, expr: &str, params: &Params) -> Response {
    let state = app.state();
    let flat = param_bool(params.get("flat_settings"), false);
    let typed_names = param_bool(params.get("include_type_name"), false);
    match state.resolve(expr, Expand::STRICT.with_params(params)) {
        Ok(names) => {
            let out: Map<String, Value> = names
                .iter()
                .map(|n| {
                    let i = &state.indices[n];
                    (
                        n.clone(),
                        json!({
                            "aliases": i.aliases,
                            "mappings": typed(&i.mappings, typed_names),
                            "settings": render_settings(&i.settings, flat),
                        }),
                    )
                })
                .collect();
            json_resp(200, &Value::Object(out))
        }
        Err(e) => err_resp(e),
    }
}

fn delete_indices(app: &App, expr: &str, params: &Params) -> Response {
    let mut state = app.state();
    for part in expr.split(',') {
        if !crate::util::has_wildcard(part)
            && !state.indices.contains_key(part)
            && state.is_alias(part)
        {
            return err_resp(EsError::illegal_argument(format!(
                "The provided expression [{part}] matches an alias, specify the corresponding concrete indices instead."
            )));
        }
    }
    match state.resolve(expr, Expand::STRICT.with_params(params)) {
        Ok(names) => {
            for n in names {
                state.indices.remove(&n);
            }
            json_resp(200, &json!({ "acknowledged": true }))
        }
        Err(e) => err_resp(e),
    }
}

fn human_bytes(n: usize) -> String {
    if n >= 1 << 30 {
        format!("{:.1}gb", n as f64 / (1u64 << 30) as f64)
    } else if n >= 1 << 20 {
        format!("{:.1}mb", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1}kb", n as f64 / 1024.0)
    } else {
        format!("{n}b")
    }
}

/// Renders `_cat` rows as JSON (`format=json`) or ES's aligned text table.
fn cat(rows: Vec<Vec<(&'static str, String)>>, params: &Params) -> Response {
    let wanted: Option<Vec<String>> = params
        .get("h")
        .map(|h| h.split(',').map(str::to_string).collect());
    let rows: Vec<Vec<(&str, String)>> = rows
        .into_iter()
        .map(|r| match &wanted {
            Some(w) => w
                .iter()
                .filter_map(|c| r.iter().find(|(k, _)| *k == c.as_str()).cloned())
                .collect(),
            None => r,
        })
        .collect();
    if params.get("format").map(String::as_str) == Some("json") {
        let v: Vec<Value> = rows
            .iter()
            .map(|r| Value::Object(r.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()))
            .collect();
        return json_resp(200, &Value::Array(v));
    }
    let headers: Vec<&str> = match (rows.first(), &wanted) {
        (Some(r), _) => r.iter().map(|(k, _)| *k).collect(),
        (None, _) => Vec::new(),
    };
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, (_, v)) in r.iter().enumerate() {
            widths[i] = widths[i].max(v.len());
        }
    }
    let mut text = String::new();
    let mut line = |cells: Vec<&str>| {
        let l: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        text.push_str(l.join(" ").trim_end());
        text.push('\n');
    };
    if param_bool(params.get("v"), false) {
        line(headers.clone());
    }
    for r in &rows {
        line(r.iter().map(|(_, v)| v.as_str()).collect());
    }
    let mut resp = respond(200, text.into_bytes());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    resp
}

fn cat_indices(app: &App, expr: &str, params: &Params) -> Response {
    let state = app.state();
    let names = match state.resolve(expr, Expand::STRICT.with_params(params)) {
        Ok(n) => n,
        Err(e) => return err_resp(e),
    };
    let rows = names
        .iter()
        .map(|n| {
            let i = &state.indices[n];
            let size = i.store_bytes();
            vec![
                (
                    "health",
                    if i.replicas() > 0 { "yellow" } else { "green" }.to_string(),
                ),
                ("status", "open".to_string()),
                ("index", n.clone()),
                ("uuid", i.uuid.clone()),
                ("pri", i.shards().to_string()),
                ("rep", i.replicas().to_string()),
                ("docs.count", i.doc_count().to_string()),
                ("docs.deleted", "0".to_string()),
                ("store.size", human_bytes(size)),
                ("pri.store.size", human_bytes(size)),
            ]
        })
        .collect();
    cat(rows, params)
}

fn cat_aliases(app: &App, names: Option<&str>, params: &Params) -> Response {
    let state = app.state();
    let mut rows = Vec::new();
    for (index_name, index) in &state.indices {
        for (alias, props) in &index.aliases {
            if let Some(n) = names
                && !n.split(',').any(|p| wildcard_match(p, alias))
            {
                continue;
            }
            let s = |k: &str| {
                props.get(k).map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
            };
            rows.push(vec![
                ("alias", alias.clone()),
                ("index", index_name.clone()),
                (
                    "filter",
                    if props.get("filter").is_some() {
                        "*".into()
                    } else {
                        "-".into()
                    },
                ),
                (
                    "routing.index",
                    s("index_routing").unwrap_or_else(|| "-".into()),
                ),
                (
                    "routing.search",
                    s("search_routing").unwrap_or_else(|| "-".into()),
                ),
                (
                    "is_write_index",
                    s("is_write_index").unwrap_or_else(|| "-".into()),
                ),
            ]);
        }
    }
    cat(rows, params)
}

fn cluster_settings(app: &App, params: &Params) -> Response {
    let state = app.state();
    let flat = param_bool(params.get("flat_settings"), false);
    json_resp(
        200,
        &json!({
            "persistent": render_settings(&state.persistent, flat),
            "transient": render_settings(&state.transient, flat),
        }),
    )
}

fn health_body(app: &App, expr: &str) -> Result<(Value, &'static str), EsError> {
    let state = app.state();
    let names = state.resolve(expr, Expand::STRICT)?;
    let (mut primaries, mut unassigned) = (0u32, 0u32);
    for n in &names {
        let i = &state.indices[n];
        primaries += i.shards();
        unassigned += i.shards() * i.replicas();
    }
    let status = if unassigned > 0 { "yellow" } else { "green" };
    let total = primaries + unassigned;
    let pct = if total == 0 {
        100.0
    } else {
        f64::from(primaries) * 100.0 / f64::from(total)
    };
    Ok((
        json!({
            "cluster_name": "cairn-test",
            "status": status,
            "timed_out": false,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1,
            "active_primary_shards": primaries,
            "active_shards": primaries,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": unassigned,
            "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": pct,
        }),
        status,
    ))
}

async fn cluster_health(app: &App, expr: &str, params: &Params) -> Response {
    let want = params.get("wait_for_status").map(String::as_str);
    let timeout = match params.get("timeout") {
        Some(t) => match parse_time_value("timeout", t) {
            Ok(d) => d,
            Err(e) => return err_resp(e),
        },
        None => Duration::from_secs(30),
    };
    let deadline = Instant::now() + timeout;
    loop {
        let (mut body, status) = match health_body(app, expr) {
            Ok(b) => b,
            Err(e) => return err_resp(e),
        };
        let ok = match want {
            None | Some("red") | Some("yellow") => true,
            Some(_) => status == "green",
        };
        if ok {
            return json_resp(200, &body);
        }
        if Instant::now() >= deadline {
            body["timed_out"] = json!(true);
            return json_resp(408, &body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
