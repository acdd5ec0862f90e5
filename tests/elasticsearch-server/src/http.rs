//! The REST layer: authentication, fault injection, routing by method and path, ES-shaped
//! responses. Everything goes through one handler so unknown endpoints are logged, not lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::App;
use crate::bulk::{self, Action, Op};
use crate::error::EsError;
use crate::faults::FaultsRequest;
use crate::search;
use crate::security::{Principal, cluster_denied, index_denied};
use crate::snapshot;
use crate::store::{Expand, unwrap_typed_mapping};
use crate::util::{has_wildcard, param_bool, parse_time_value, render_settings, wildcard_match};

pub const WWW_AUTHENTICATE: &str = "Basic realm=\"security\" charset=\"UTF-8\"";

/// ES's `http.max_content_length` default.
const MAX_BODY: usize = 100 * 1024 * 1024;

pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
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

/// Where the index expression of a request is, and what it needs.
enum Access {
    /// No check (scroll continuation, bulk: checked per item, test endpoints).
    Open,
    Cluster(&'static str, &'static str),
    /// An index privilege on the expression at path segment `pos` (`None`: `_all`).
    Index(Option<usize>, &'static str, &'static str),
    /// `POST /_aliases`: `manage` on every index its actions name.
    Aliases,
}

fn access(m: &str, s: &[&str]) -> Access {
    use Access::*;
    match (m, s) {
        ("GET" | "HEAD", []) => Cluster("monitor", "cluster:monitor/main"),
        (_, ["_bulk"] | [_, "_bulk"]) => Open,
        (_, ["_search", "scroll", ..]) => Open,
        (_, ["_resolve", ..]) => Open,
        ("GET", ["_data_stream", ..]) => Open,
        ("GET" | "POST", ["_search" | "_count"]) => Index(None, "read", "indices:data/read/search"),
        ("GET" | "POST", [_, "_search" | "_count"]) => {
            Index(Some(0), "read", "indices:data/read/search")
        }
        (_, ["_refresh" | "_flush"]) => Index(None, "maintenance", "indices:admin/refresh"),
        (_, [_, "_refresh" | "_flush"]) => Index(Some(0), "maintenance", "indices:admin/refresh"),
        ("POST", ["_aliases"]) => Aliases,
        ("GET" | "HEAD", ["_alias" | "_aliases", ..]) => {
            Index(None, "view_index_metadata", "indices:admin/aliases/get")
        }
        ("GET" | "HEAD", [_, "_alias" | "_aliases", ..]) => {
            Index(Some(0), "view_index_metadata", "indices:admin/aliases/get")
        }
        (_, [_, "_alias" | "_aliases", _]) => Index(Some(0), "manage", "indices:admin/aliases"),
        ("GET", ["_mapping" | "_settings", ..]) => {
            Index(None, "view_index_metadata", "indices:admin/get")
        }
        ("GET", [_, "_mapping" | "_settings", ..]) => {
            Index(Some(0), "view_index_metadata", "indices:admin/get")
        }
        (_, [_, "_mapping"]) => Index(Some(0), "manage", "indices:admin/mapping/put"),
        ("PUT", ["_settings"]) => Index(None, "manage", "indices:admin/settings/update"),
        ("PUT", [_, "_settings"]) => Index(Some(0), "manage", "indices:admin/settings/update"),
        ("GET", ["_cat", "indices"]) => Index(None, "monitor", "indices:monitor/stats"),
        ("GET", ["_cat", "indices", _]) => Index(Some(2), "monitor", "indices:monitor/stats"),
        ("GET", ["_cat", ..]) => Cluster("monitor", "cluster:monitor/state"),
        ("GET", ["_cluster", ..]) => Cluster("monitor", "cluster:monitor/health"),
        (_, ["_cluster", ..]) => Cluster("manage", "cluster:admin/settings/update"),
        (_, [_, "_open" | "_close"]) => Index(Some(0), "manage", "indices:admin/close"),
        ("GET", ["_index_template" | "_component_template", ..]) => {
            Cluster("manage_index_templates", "indices:admin/index_template/get")
        }
        (_, ["_index_template" | "_component_template", ..]) => {
            Cluster("manage_index_templates", "indices:admin/index_template/put")
        }
        ("GET", ["_ilm", ..]) => Cluster("read_ilm", "cluster:admin/ilm/get"),
        (_, ["_ilm", ..]) => Cluster("manage_ilm", "cluster:admin/ilm/put"),
        ("PUT", ["_data_stream", _]) => {
            Index(Some(1), "create_index", "indices:admin/data_stream/create")
        }
        (_, ["_data_stream", _]) => {
            Index(Some(1), "delete_index", "indices:admin/data_stream/delete")
        }
        (_, [_, "_rollover"]) => Index(Some(0), "manage", "indices:admin/rollover"),
        ("GET", ["_snapshot", ..]) => Cluster("monitor_snapshot", "cluster:admin/snapshot/get"),
        (_, ["_snapshot", _]) => Cluster("manage", "cluster:admin/repository/put"),
        ("PUT" | "POST", ["_snapshot", _, _]) => {
            Cluster("create_snapshot", "cluster:admin/snapshot/create")
        }
        (_, ["_snapshot", _, _]) => Cluster("manage", "cluster:admin/snapshot/delete"),
        (_, ["_snapshot", ..]) => Cluster("manage", "cluster:admin/snapshot/restore"),
        ("GET" | "HEAD", [_, "_doc" | "_source", _]) => {
            Index(Some(0), "read", "indices:data/read/get")
        }
        (_, [_, "_doc" | "_create" | "_update", ..]) => {
            Index(Some(0), "index", "indices:data/write/index")
        }
        ("PUT", [_]) => Index(Some(0), "create_index", "indices:admin/create"),
        ("DELETE", [_]) => Index(Some(0), "delete_index", "indices:admin/delete"),
        ("GET" | "HEAD", [_]) => Index(Some(0), "view_index_metadata", "indices:admin/get"),
        _ => Open,
    }
}

/// ES security's index resolution: a concrete name the caller may not use is a 403; a
/// wildcard expands to the indices the caller may use (so it may match nothing). Returns the
/// expression with wildcards replaced by those indices.
fn authorize_indices(
    app: &App,
    principal: &Principal,
    expr: &str,
    params: &Params,
    privilege: &'static str,
    action: &str,
) -> Result<String, EsError> {
    let state = app.state();
    let allowed = |name: &str| {
        principal.role.has_index(name, privilege)
            || state.indices.get(name).is_some_and(|i| {
                i.aliases
                    .keys()
                    .any(|a| principal.role.has_index(a, privilege))
                    || i.data_stream
                        .as_deref()
                        .is_some_and(|d| principal.role.has_index(d, privilege))
            })
    };
    let mut out: Vec<String> = Vec::new();
    let mut any_wildcard = false;
    let parts: Vec<&str> = if expr.is_empty() {
        vec!["_all"]
    } else {
        expr.split(',').collect()
    };
    for part in parts {
        let part = part.trim();
        if part.starts_with('-') && any_wildcard {
            out.push(part.to_string());
        } else if part == "_all" || has_wildcard(part) {
            any_wildcard = true;
            let names = state.resolve(part, Expand::STRICT.with_params(params))?;
            out.extend(names.into_iter().filter(|n| allowed(n)));
        } else if principal.role.has_index(part, privilege) {
            out.push(part.to_string());
        } else {
            return Err(index_denied(principal, privilege, action, part));
        }
    }
    if out.iter().all(|p| p.starts_with('-')) {
        // Nothing the caller may see: an expression that matches nothing.
        return Ok("-*".to_string());
    }
    Ok(out.join(","))
}

fn authorize_alias_actions(app: &App, principal: &Principal, body: &[u8]) -> Result<(), EsError> {
    let v = parse_body(body)?;
    for action in v["actions"].as_array().into_iter().flatten() {
        let Some((_, def)) = action.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        let mut exprs: Vec<String> = Vec::new();
        if let Some(i) = def["index"].as_str() {
            exprs.push(i.to_string());
        }
        for i in def["indices"].as_array().into_iter().flatten() {
            if let Some(i) = i.as_str() {
                exprs.push(i.to_string());
            }
        }
        for e in exprs {
            let state = app.state();
            let names = state.resolve(&e, Expand::ALL).unwrap_or_default();
            for n in names
                .iter()
                .map(String::as_str)
                .chain(std::iter::once(e.as_str()))
            {
                if !has_wildcard(n) && !principal.role.has_index(n, "manage") {
                    return Err(index_denied(
                        principal,
                        "manage",
                        "indices:admin/aliases",
                        n,
                    ));
                }
            }
        }
    }
    Ok(())
}

async fn handle(State(app): State<Arc<App>>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return err_resp(EsError::new(
                413,
                "content_too_long_exception",
                format!("request body is too large (more than {MAX_BODY} bytes)"),
            ));
        }
    };
    let path = uri.path().to_string();
    let params = parse_params(uri.query());
    let mut segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let test_endpoint = segs.first().map(String::as_str) == Some("_cairn_test");
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut principal: Option<Principal> = None;
    if app.realms.enabled() && !test_endpoint {
        let client_cert = parts
            .extensions
            .get::<crate::tls::PeerCertificate>()
            .is_some();
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match app.realms.authenticate(authorization, client_cert, target) {
            Ok(p) => principal = Some(p),
            Err(e) => return finish(&app, &method, err_resp(e)),
        }
    }
    // Checked before security expands wildcards, as ES does.
    let destructive = method == Method::DELETE
        && matches!(segs.as_slice(), [_] | [_, _] if segs.len() == 1 || segs[0] == "_data_stream")
        && segs
            .last()
            .is_some_and(|e| e.split(',').any(|p| p == "_all" || has_wildcard(p)))
        && destructive_requires_name(&app);
    let resp = if let Some(status) = app.faults.take_request_failure(method.as_str(), &path) {
        err_resp(EsError::injected(status, method.as_str(), &path))
    } else if destructive {
        err_resp(EsError::illegal_argument(
            "Wildcard expressions or all indices are not allowed",
        ))
    } else {
        let checked = match &principal {
            None => Ok(()),
            Some(p) => {
                let s: Vec<&str> = segs.iter().map(String::as_str).collect();
                match access(method.as_str(), &s) {
                    Access::Open => Ok(()),
                    Access::Cluster(privilege, action) => {
                        if p.role.has_cluster(privilege) {
                            Ok(())
                        } else {
                            Err(cluster_denied(p, privilege, action))
                        }
                    }
                    Access::Aliases => authorize_alias_actions(&app, p, &body),
                    Access::Index(pos, privilege, action) => {
                        let expr = pos.map_or("_all", |i| s[i]).to_string();
                        match authorize_indices(&app, p, &expr, &params, privilege, action) {
                            Ok(rewritten) => {
                                if let Some(i) = pos {
                                    segs[i] = rewritten;
                                } else if rewritten != "_all" {
                                    // `/_search` → `/{allowed}/_search`
                                    segs.insert(
                                        if segs.first().map(String::as_str) == Some("_cat") {
                                            2
                                        } else {
                                            0
                                        },
                                        rewritten,
                                    );
                                }
                                Ok(())
                            }
                            Err(e) => Err(e),
                        }
                    }
                }
            }
        };
        match checked {
            Ok(()) => {
                dispatch(
                    &app,
                    &method,
                    &path,
                    &segs,
                    &params,
                    &body,
                    principal.as_ref(),
                )
                .await
            }
            Err(e) => err_resp(e),
        }
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
    finish(&app, &method, resp)
}

/// Flavor-specific headers; no body for HEAD.
fn finish(app: &App, method: &Method, mut resp: Response) -> Response {
    if app.flavor.is_opensearch() {
        resp.headers_mut().remove("x-elastic-product");
    }
    if *method == Method::HEAD {
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
    principal: Option<&Principal>,
) -> Response {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = method.as_str();
    let is_read = m == "GET" || m == "HEAD";
    if params.contains_key("include_type_name") && !app.flavor.accepts_include_type_name() {
        return err_resp(EsError::illegal_argument(format!(
            "request [{path}] contains unrecognized parameter: [include_type_name]"
        )));
    }
    match (m, s.as_slice()) {
        ("GET" | "HEAD", []) => json_resp(200, &app.flavor.root_info()),

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
        ("POST", ["_cairn_test", "close", index]) => {
            let mut state = app.state();
            match state.indices.get_mut(*index) {
                Some(i) => {
                    i.closed = true;
                    json_resp(200, &json!({ "acknowledged": true }))
                }
                None => err_resp(EsError::index_not_found(index)),
            }
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
        ("POST" | "PUT", ["_bulk"]) => bytes_result(bulk::bulk(app, None, params, body, principal)),
        ("POST" | "PUT", [index, "_bulk"]) => {
            bytes_result(bulk::bulk(app, Some(index), params, body, principal))
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

        // ---- index resolution, open/close, templates, ILM, data streams -----------------
        ("GET", ["_resolve", "index", expr]) => resolve_index(app, expr, params, principal),
        ("POST", [index, "_close"]) => open_close(app, index, params, true),
        ("POST", [index, "_open"]) => open_close(app, index, params, false),
        ("GET", ["_index_template"]) => get_templates(app, "*", false),
        ("GET", ["_index_template", name]) => get_templates(app, name, false),
        ("PUT" | "POST", ["_index_template", name]) => put_template(app, name, params, body, false),
        ("DELETE", ["_index_template", name]) => delete_template(app, name, false),
        ("GET", ["_component_template"]) => get_templates(app, "*", true),
        ("GET", ["_component_template", name]) => get_templates(app, name, true),
        ("PUT" | "POST", ["_component_template", name]) => {
            put_template(app, name, params, body, true)
        }
        ("DELETE", ["_component_template", name]) => delete_template(app, name, true),
        (_, ["_ilm", ..]) if !app.flavor.has_ilm() => unknown(method, path),
        ("GET", ["_ilm", "policy"]) => get_policies(app, "*"),
        ("GET", ["_ilm", "policy", name]) => get_policies(app, name),
        ("PUT", ["_ilm", "policy", name]) => put_policy(app, name, body),
        ("DELETE", ["_ilm", "policy", name]) => {
            let mut state = app.state();
            match state.ilm_policies.remove(*name) {
                Some(_) => json_resp(200, &json!({ "acknowledged": true })),
                None => err_resp(EsError::new(
                    404,
                    "resource_not_found_exception",
                    format!("Lifecycle policy not found: {name}"),
                )),
            }
        }
        ("GET", ["_data_stream"]) => get_data_streams(app, "*", principal),
        ("GET", ["_data_stream", expr]) => get_data_streams(app, expr, principal),
        ("PUT", ["_data_stream", name]) => result_json(
            app.state()
                .create_data_stream(name)
                .map(|()| json!({ "acknowledged": true })),
        ),
        ("DELETE", ["_data_stream", expr]) => delete_data_streams(app, expr),
        ("POST", [name, "_rollover"]) => {
            let mut state = app.state();
            if !state.data_streams.contains_key(*name) {
                return err_resp(EsError::illegal_argument(format!(
                    "rollover target [{name}] does not exist (the test double rolls over data streams only)"
                )));
            }
            let old = state.data_streams[*name].indices.last().cloned();
            result_json(state.roll_over(name).map(|new| {
                json!({ "acknowledged": true, "shards_acknowledged": true, "old_index": old,
                        "new_index": new, "rolled_over": true, "dry_run": false, "conditions": {} })
            }))
        }

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
                let mut state = app.state();
                let flavor = state.flavor;
                result_json(state.create_index(index, &v, typed).map(|()| {
                    // Primaries that no node may hold are not started: not acknowledged.
                    let started = state.indices[*index].allocated(flavor);
                    json!({ "acknowledged": true, "shards_acknowledged": started, "index": index })
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
    let ctx = bulk::Ctx {
        drop: matches!(action, Action::Index | Action::Create) && app.faults.take_dropped_write(),
        ..bulk::Ctx::default()
    };
    let item = bulk::apply(&mut state, op, ctx);
    let replicas = state
        .indices
        .get(&item.index)
        .map(|i| i.replicas())
        .unwrap_or(1);
    let types = state.flavor.has_types();
    drop(state);
    match &item.outcome {
        Ok((_, _, status)) => {
            let mut out = Vec::new();
            bulk::write_item_body(&mut out, &item, replicas, false, types);
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
        let mut body = json!({ "_index": names[0], "_id": id, "found": false });
        if state.flavor.has_types() {
            body["_type"] = json!("_doc");
        }
        return json_resp(404, &body);
    };
    if source_only {
        return respond(200, doc.source.to_vec());
    }
    let mut out = Vec::with_capacity(doc.source.len() + 160);
    out.extend_from_slice(b"{\"_index\":");
    crate::util::push_json_str(&mut out, &names[0]);
    if state.flavor.has_types() {
        out.extend_from_slice(b",\"_type\":\"_doc\"");
    }
    out.extend_from_slice(b",\"_id\":");
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
    let indices = match state.resolve(expr, Expand::STRICT.with_params(params)) {
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

/// `action.destructive_requires_name`: the cluster setting, or the flavor's default.
fn destructive_requires_name(app: &App) -> bool {
    let state = app.state();
    let key = "action.destructive_requires_name";
    match state
        .transient
        .get(key)
        .or_else(|| state.persistent.get(key))
    {
        Some(v) => v.as_str() == Some("true"),
        None => state.flavor.destructive_requires_name(),
    }
}

fn delete_indices(app: &App, expr: &str, params: &Params) -> Response {
    if destructive_requires_name(app) && expr.split(',').any(|p| p == "_all" || has_wildcard(p)) {
        return err_resp(EsError::illegal_argument(
            "Wildcard expressions or all indices are not allowed",
        ));
    }
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
            if let Some(n) = names
                .iter()
                .find(|n| state.indices[*n].data_stream.is_some())
            {
                let ds = state.indices[n].data_stream.clone().unwrap_or_default();
                return err_resp(EsError::illegal_argument(format!(
                    "index [{n}] is the write index for data stream [{ds}] and cannot be deleted"
                )));
            }
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
    // `_cat/indices` expands wildcards to closed and hidden indices too.
    let names = match state.resolve(expr, Expand::ALL.with_params(params)) {
        Ok(n) => n,
        Err(e) => return err_resp(e),
    };
    let rows = names
        .iter()
        .map(|n| {
            let i = &state.indices[n];
            let size = i.store_bytes();
            vec![
                ("health", i.health(state.flavor).to_string()),
                (
                    "status",
                    if i.closed { "close" } else { "open" }.to_string(),
                ),
                ("index", n.clone()),
                ("uuid", i.uuid.clone()),
                ("pri", i.shards().to_string()),
                ("rep", i.replicas().to_string()),
                (
                    "docs.count",
                    if i.closed {
                        String::new()
                    } else {
                        i.doc_count().to_string()
                    },
                ),
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
    let (mut primaries, mut unassigned, mut red) = (0u32, 0u32, false);
    for n in &names {
        let i = &state.indices[n];
        if i.allocated(state.flavor) {
            primaries += i.shards();
        } else {
            red = true;
            unassigned += i.shards();
        }
        unassigned += i.shards() * i.replicas();
    }
    let status = if red {
        "red"
    } else if unassigned > 0 {
        "yellow"
    } else {
        "green"
    };
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
            None | Some("red") => true,
            Some("yellow") => status != "red",
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

/// `GET /_resolve/index/{expr}`: indices (with `open`/`closed`/`hidden`/`system`
/// attributes), aliases and data streams, filtered by the caller's `view_index_metadata`.
fn resolve_index(
    app: &App,
    expr: &str,
    params: &Params,
    principal: Option<&Principal>,
) -> Response {
    let state = app.state();
    let opts = Expand::STRICT.with_params(params);
    let may = |name: &str| {
        principal.is_none_or(|p| {
            p.role.has_index(name, "view_index_metadata") || p.role.has_index(name, "manage")
        })
    };
    let mut indices = Vec::new();
    let mut aliases: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut streams = Vec::new();
    for part in expr.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part.starts_with('-') {
            continue;
        }
        let wildcard = part == "_all" || has_wildcard(part);
        for (name, ds) in &state.data_streams {
            if (wildcard && (part == "_all" || wildcard_match(part, name)) && opts.open)
                || (!wildcard && part == name)
            {
                if may(name) {
                    streams.push(json!({ "name": name, "backing_indices": ds.indices,
                                         "timestamp_field": "@timestamp" }));
                } else if !wildcard {
                    return err_resp(index_denied(
                        principal.expect("checked"),
                        "view_index_metadata",
                        "indices:admin/resolve/index",
                        name,
                    ));
                }
            }
        }
        for (name, index) in &state.indices {
            let hit = if wildcard {
                (part == "_all" || wildcard_match(part, name))
                    && (if index.closed { opts.closed } else { opts.open })
                    && (opts.hidden || !index.hidden())
            } else {
                part == name
            };
            if hit {
                if !may(name) {
                    if wildcard {
                        continue;
                    }
                    return err_resp(index_denied(
                        principal.expect("checked"),
                        "view_index_metadata",
                        "indices:admin/resolve/index",
                        name,
                    ));
                }
                let mut attributes = vec![if index.closed { "closed" } else { "open" }];
                if index.hidden() {
                    attributes.push("hidden");
                }
                if name.starts_with('.') && index.data_stream.is_none() && index.hidden() {
                    attributes.push("system");
                }
                let mut entry = json!({ "name": name, "attributes": attributes });
                if !index.aliases.is_empty() {
                    entry["aliases"] = json!(index.aliases.keys().collect::<Vec<_>>());
                }
                if let Some(ds) = &index.data_stream {
                    entry["data_stream"] = json!(ds);
                }
                if !indices.iter().any(|i: &Value| i["name"] == entry["name"]) {
                    indices.push(entry);
                }
            }
            for alias in index.aliases.keys() {
                let alias_hit = if wildcard {
                    part == "_all" || wildcard_match(part, alias)
                } else {
                    part == alias
                };
                if alias_hit && may(alias) {
                    let list = aliases.entry(alias.clone()).or_default();
                    if !list.contains(name) {
                        list.push(name.clone());
                    }
                }
            }
        }
        let found = indices.iter().any(|i| i["name"] == part)
            || aliases.contains_key(part)
            || streams.iter().any(|d| d["name"] == part);
        if !wildcard && !found && !opts.ignore_unavailable {
            return err_resp(EsError::index_not_found(part));
        }
    }
    let aliases: Vec<Value> = aliases
        .into_iter()
        .map(|(name, indices)| json!({ "name": name, "indices": indices }))
        .collect();
    json_resp(
        200,
        &json!({ "indices": indices, "aliases": aliases, "data_streams": streams }),
    )
}

/// `POST /{index}/_close`, `POST /{index}/_open`.
fn open_close(app: &App, expr: &str, params: &Params, close: bool) -> Response {
    let mut state = app.state();
    let mut opts = Expand::STRICT.with_params(params);
    if !close {
        opts.closed = true;
    }
    let names = match state.resolve(expr, opts) {
        Ok(n) => n,
        Err(e) => return err_resp(e),
    };
    let mut out = Map::new();
    for n in &names {
        let index = state.indices.get_mut(n).expect("resolved");
        index.closed = close;
        out.insert(n.clone(), json!({ "closed": close }));
    }
    if close {
        json_resp(
            200,
            &json!({ "acknowledged": true, "shards_acknowledged": true, "indices": out }),
        )
    } else {
        json_resp(
            200,
            &json!({ "acknowledged": true, "shards_acknowledged": true }),
        )
    }
}

fn template_missing(name: &str, component: bool) -> EsError {
    if component {
        EsError::new(
            404,
            "resource_not_found_exception",
            format!("component template matching [{name}] not found"),
        )
    } else {
        EsError::new(
            404,
            "resource_not_found_exception",
            format!("index template matching [{name}] not found"),
        )
    }
}

fn get_templates(app: &App, expr: &str, component: bool) -> Response {
    let state = app.state();
    let table = if component {
        &state.component_templates
    } else {
        &state.templates
    };
    let found: Vec<Value> = table
        .iter()
        .filter(|(n, _)| expr.split(',').any(|p| wildcard_match(p, n)))
        .map(|(n, t)| {
            if component {
                json!({ "name": n, "component_template": t })
            } else {
                json!({ "name": n, "index_template": t })
            }
        })
        .collect();
    if found.is_empty() && !has_wildcard(expr) {
        return err_resp(template_missing(expr, component));
    }
    if component {
        json_resp(200, &json!({ "component_templates": found }))
    } else {
        json_resp(200, &json!({ "index_templates": found }))
    }
}

fn put_template(app: &App, name: &str, params: &Params, body: &Bytes, component: bool) -> Response {
    let v = match parse_body(body) {
        Ok(Value::Object(v)) => v,
        Ok(_) => return err_resp(EsError::parsing("template body must be an object")),
        Err(e) => return err_resp(e),
    };
    let allowed: &[&str] = if component {
        &["template", "version", "_meta", "deprecated"]
    } else {
        &[
            "index_patterns",
            "template",
            "composed_of",
            "priority",
            "version",
            "_meta",
            "data_stream",
            "allow_auto_create",
            "ignore_missing_component_templates",
            "deprecated",
        ]
    };
    if let Some(k) = v.keys().find(|k| !allowed.contains(&k.as_str())) {
        let what = if component {
            "component_template"
        } else {
            "index_template"
        };
        return err_resp(EsError::new(
            400,
            "x_content_parse_exception",
            format!("[1:2] [{what}] unknown field [{k}]"),
        ));
    }
    if !component
        && !v
            .get("index_patterns")
            .is_some_and(|p| p.is_array() || p.is_string())
    {
        return err_resp(EsError::new(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: index patterns are missing;",
        ));
    }
    let mut state = app.state();
    // Settings and mappings are validated as at index creation.
    if let Some(t) = v.get("template") {
        if let Some(settings) = t.get("settings") {
            match crate::store::index_settings_from(settings) {
                Ok(flat) => {
                    if let Err(e) = state.check_settings(&flat) {
                        return err_resp(e);
                    }
                }
                Err(e) => return err_resp(e),
            }
        }
        if let Some(Value::Object(m)) = t.get("mappings")
            && let Err(e) = crate::mapping::validate(m)
        {
            return err_resp(e);
        }
    }
    if !component {
        for c in v
            .get("composed_of")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let c = c.as_str().unwrap_or_default();
            if !state.component_templates.contains_key(c) {
                return err_resp(EsError::illegal_argument(format!(
                    "index template [{name}] specifies component templates [{c}] that do not exist"
                )));
            }
        }
    }
    let table = if component {
        &mut state.component_templates
    } else {
        &mut state.templates
    };
    if param_bool(params.get("create"), false) && table.contains_key(name) {
        let what = if component {
            "component template"
        } else {
            "index template"
        };
        return err_resp(EsError::illegal_argument(format!(
            "{what} [{name}] already exists"
        )));
    }
    let mut stored = v;
    if let Some(Value::String(p)) = stored.get("index_patterns").cloned() {
        stored.insert("index_patterns".into(), json!([p]));
    }
    table.insert(name.to_string(), Value::Object(stored));
    json_resp(200, &json!({ "acknowledged": true }))
}

fn delete_template(app: &App, name: &str, component: bool) -> Response {
    let mut state = app.state();
    let table = if component {
        &mut state.component_templates
    } else {
        &mut state.templates
    };
    match table.remove(name) {
        Some(_) => json_resp(200, &json!({ "acknowledged": true })),
        None => err_resp(template_missing(name, component)),
    }
}

fn get_policies(app: &App, expr: &str) -> Response {
    let state = app.state();
    let found: Map<String, Value> = state
        .ilm_policies
        .iter()
        .filter(|(n, _)| expr.split(',').any(|p| wildcard_match(p, n)))
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    if found.is_empty() && !has_wildcard(expr) {
        return err_resp(EsError::new(
            404,
            "resource_not_found_exception",
            format!("Lifecycle policy not found: {expr}"),
        ));
    }
    json_resp(200, &Value::Object(found))
}

fn put_policy(app: &App, name: &str, body: &Bytes) -> Response {
    let v = match parse_body(body) {
        Ok(v) => v,
        Err(e) => return err_resp(e),
    };
    let Some(policy) = v.get("policy").filter(|p| p.is_object()) else {
        return err_resp(EsError::new(
            400,
            "x_content_parse_exception",
            "[1:2] [put_lifecycle_request] policy is required",
        ));
    };
    if let Some(k) = policy.as_object().and_then(|p| {
        p.keys()
            .find(|k| !["phases", "_meta"].contains(&k.as_str()))
    }) {
        return err_resp(EsError::new(
            400,
            "x_content_parse_exception",
            format!("[1:12] [lifecycle_policy] unknown field [{k}]"),
        ));
    }
    let mut state = app.state();
    let version = state
        .ilm_policies
        .get(name)
        .and_then(|p| p["version"].as_u64())
        .unwrap_or(0)
        + 1;
    state.ilm_policies.insert(
        name.to_string(),
        json!({
            "version": version,
            "modified_date": crate::util::iso_millis(crate::util::now_millis()),
            "policy": policy,
        }),
    );
    json_resp(200, &json!({ "acknowledged": true }))
}

fn get_data_streams(app: &App, expr: &str, principal: Option<&Principal>) -> Response {
    let state = app.state();
    let mut out = Vec::new();
    for part in expr.split(',') {
        let mut found = false;
        for (name, ds) in &state.data_streams {
            if !(part == "_all" || wildcard_match(part, name)) {
                continue;
            }
            if let Some(p) = principal
                && !p.role.has_index(name, "view_index_metadata")
            {
                if has_wildcard(part) {
                    continue;
                }
                return err_resp(index_denied(
                    p,
                    "view_index_metadata",
                    "indices:admin/data_stream/get",
                    name,
                ));
            }
            found = true;
            let indices: Vec<Value> = ds
                .indices
                .iter()
                .map(|i| json!({ "index_name": i, "index_uuid": state.indices.get(i).map(|x| x.uuid.clone()) }))
                .collect();
            let status = if ds
                .indices
                .iter()
                .filter_map(|i| state.indices.get(i))
                .all(|i| i.allocated(state.flavor))
            {
                "GREEN"
            } else {
                "RED"
            };
            out.push(json!({
                "name": name,
                "timestamp_field": { "name": "@timestamp" },
                "indices": indices,
                "generation": ds.generation,
                "status": status,
                "template": ds.template,
                "hidden": false,
                "system": false,
            }));
        }
        if !found && !has_wildcard(part) && part != "_all" {
            return err_resp(EsError::index_not_found(part));
        }
    }
    json_resp(200, &json!({ "data_streams": out }))
}

fn delete_data_streams(app: &App, expr: &str) -> Response {
    if destructive_requires_name(app) && expr.split(',').any(|p| p == "_all" || has_wildcard(p)) {
        return err_resp(EsError::illegal_argument(
            "Wildcard expressions or all indices are not allowed",
        ));
    }
    let mut state = app.state();
    let names: Vec<String> = state
        .data_streams
        .keys()
        .filter(|n| expr.split(',').any(|p| p == "_all" || wildcard_match(p, n)))
        .cloned()
        .collect();
    if names.is_empty() && !has_wildcard(expr) {
        return err_resp(EsError::index_not_found(expr));
    }
    for n in names {
        if let Some(ds) = state.data_streams.remove(&n) {
            for i in ds.indices {
                state.indices.remove(&i);
            }
        }
    }
    json_resp(200, &json!({ "acknowledged": true }))
}
