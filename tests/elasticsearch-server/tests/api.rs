//! Behaviour of the Elasticsearch test double over real HTTP: response and error shapes,
//! aliases, scrolls, bulk, snapshots, faults and auth.

use std::error::Error;
use std::time::Duration;

use cairn_es_test_server::{EsServer, Options};
use reqwest::blocking::Client;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn Error>>;

struct Es {
    server: EsServer,
    client: Client,
    auth: Option<(String, String)>,
}

impl Es {
    fn new() -> Es {
        Es::with(Options::default())
    }

    fn with(opts: Options) -> Es {
        let auth = opts.username.clone().zip(opts.password.clone());
        Es {
            server: EsServer::start(opts),
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            auth,
        }
    }

    /// Sends a request; returns (status, JSON body or Null).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.server.url());
        let mut req = self.client.request(method.parse().expect("method"), url);
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn bulk(&self, path: &str, ndjson: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.server.url());
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(ndjson.to_string())
            .send()
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert!(status < 300, "{method} {path} → {status}: {v}");
        v
    }
}

fn assert_error(resp: &(u16, Value), status: u16, kind: &str) {
    let (got, body) = resp;
    assert_eq!(*got, status, "status of {body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    assert!(body["error"]["reason"].is_string(), "{body}");
    assert!(body["error"]["root_cause"][0]["type"].is_string(), "{body}");
}

#[test]
fn root_and_error_bodies_have_elasticsearch_shapes() {
    let es = Es::new();
    let root = es.ok("GET", "/", None);
    assert_eq!(root["version"]["number"], "7.17.0");
    assert_eq!(root["tagline"], "You Know, for Search");

    let missing = es.call("GET", "/nope", None);
    assert_error(&missing, 404, "index_not_found_exception");
    assert_eq!(missing.1["error"]["index"], "nope");
    assert_eq!(
        missing.1["error"]["root_cause"][0]["reason"],
        "no such index [nope]"
    );

    assert_error(
        &es.call("PUT", "/Bad", None),
        400,
        "invalid_index_name_exception",
    );
    es.ok(
        "PUT",
        "/logs",
        Some(json!({"settings": {"number_of_shards": 2}})),
    );
    let again = es.call("PUT", "/logs", None);
    assert_error(&again, 400, "resource_already_exists_exception");

    let query = es.call(
        "POST",
        "/logs/_search",
        Some(json!({"query": {"bogus": {}}})),
    );
    assert_error(&query, 400, "parsing_exception");
    let unsupported = es.call(
        "POST",
        "/logs/_search",
        Some(json!({"query": {"term": {"n": 1}}})),
    );
    assert_error(&unsupported, 400, "parsing_exception");

    let (status, body) = es.call("GET", "/_nodes/stats", None);
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no handler found for uri [/_nodes/stats]")
    );
}

#[test]
fn wildcards_match_nothing_quietly_but_concrete_names_must_exist() {
    let es = Es::new();
    es.server.seed("logs-1", 3);
    es.server.seed("logs-2", 2);
    es.server.seed("other", 1);
    assert_eq!(es.ok("GET", "/nomatch-*", None), json!({}));
    assert_error(
        &es.call("GET", "/nomatch", None),
        404,
        "index_not_found_exception",
    );
    let both = es.ok("GET", "/logs-*/_count", None);
    assert_eq!(both["count"], 5);
    assert_eq!(es.ok("GET", "/logs-*,-logs-2/_count", None)["count"], 3);
    let hits = es.ok(
        "POST",
        "/nomatch-*/_search",
        Some(json!({"query": {"match_all": {}}})),
    );
    assert_eq!(hits["hits"]["total"]["value"], 0);
    assert_eq!(
        es.ok("GET", "/nomatch,other/_count?ignore_unavailable=true", None)["count"],
        1
    );
    let cat = es.ok("GET", "/_cat/indices?format=json", None);
    let logs1 = cat
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["index"] == "logs-1")
        .unwrap();
    assert_eq!(logs1["docs.count"], "3");
    es.ok("DELETE", "/logs-*", None);
    assert_error(
        &es.call("DELETE", "/logs-1", None),
        404,
        "index_not_found_exception",
    );
    assert_eq!(
        es.ok("GET", "/_cat/indices?format=json", None)
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn settings_report_es_noise_and_record_updates() {
    let es = Es::new();
    es.ok(
        "PUT",
        "/a",
        Some(json!({"settings": {"index": {"number_of_replicas": 0, "refresh_interval": "5s"}}})),
    );
    let s = es.ok("GET", "/a/_settings", None);
    let index = &s["a"]["settings"]["index"];
    assert_eq!(index["number_of_shards"], "1");
    assert_eq!(index["number_of_replicas"], "0");
    assert_eq!(index["provided_name"], "a");
    assert!(index["uuid"].is_string() && index["creation_date"].is_string());
    assert_eq!(index["version"]["created"], "7170099");

    es.ok(
        "PUT",
        "/_all/_settings",
        Some(json!({"index.translog.disable_flush": true})),
    );
    let flat = es.ok("GET", "/a/_settings?flat_settings=true", None);
    assert_eq!(
        flat["a"]["settings"]["index.translog.disable_flush"],
        "true"
    );
    let refused = es.call(
        "PUT",
        "/a/_settings",
        Some(json!({"index": {"number_of_shards": 3}})),
    );
    assert_error(&refused, 400, "illegal_argument_exception");

    let put = es.ok(
        "PUT",
        "/_cluster/settings",
        Some(
            json!({"transient": {"cluster.routing.allocation.disable_allocation": "true"},
                    "persistent": {"cluster": {"routing": {"allocation": {"enable": "none"}}}}}),
        ),
    );
    assert_eq!(
        put["transient"]["cluster"]["routing"]["allocation"]["disable_allocation"],
        "true"
    );
    let got = es.ok("GET", "/_cluster/settings?flat_settings=true", None);
    assert_eq!(
        got["persistent"]["cluster.routing.allocation.enable"],
        "none"
    );
    es.ok(
        "PUT",
        "/_cluster/settings",
        Some(json!({"transient": {"cluster.routing.allocation.disable_allocation": null}})),
    );
    let got = es.ok("GET", "/_cluster/settings", None);
    assert_eq!(got["transient"], json!({}));
    assert_eq!(es.ok("GET", "/_cluster/health", None)["status"], "green");
}

#[test]
fn mappings_merge_and_refuse_type_changes() {
    let es = Es::new();
    es.ok(
        "PUT",
        "/m",
        Some(json!({"mappings": {"properties": {"n": {"type": "long"}}}})),
    );
    es.ok(
        "PUT",
        "/m/_mapping",
        Some(json!({"properties": {"t": {"type": "keyword"}}})),
    );
    let m = es.ok("GET", "/m/_mapping", None);
    assert_eq!(m["m"]["mappings"]["properties"]["t"]["type"], "keyword");
    let change = es.call(
        "PUT",
        "/m/_mapping",
        Some(json!({"properties": {"n": {"type": "text"}}})),
    );
    assert_error(&change, 400, "illegal_argument_exception");
    assert_eq!(
        change.1["error"]["reason"],
        "mapper [n] cannot be changed from type [long] to [text]"
    );
    let typed = es.call(
        "PUT",
        "/typed",
        Some(json!({"mappings": {"_doc": {"properties": {}}}})),
    );
    assert_error(&typed, 400, "mapper_parsing_exception");
}

#[test]
fn alias_actions_are_atomic() {
    let es = Es::new();
    es.server.seed("v1", 2);
    es.server.seed("v2", 3);
    es.ok(
        "POST",
        "/_aliases",
        Some(json!({"actions": [{"add": {"index": "v1", "alias": "live"}}]})),
    );
    assert_eq!(es.ok("GET", "/live/_count", None)["count"], 2);

    // The last action fails, so the swap before it must not happen.
    let failed = es.call(
        "POST",
        "/_aliases",
        Some(json!({"actions": [
            {"remove": {"index": "v1", "alias": "live"}},
            {"add": {"index": "v2", "alias": "live"}},
            {"remove": {"index": "v2", "alias": "absent"}}
        ]})),
    );
    assert_error(&failed, 404, "aliases_not_found_exception");
    assert_eq!(
        es.ok("GET", "/_alias/live", None),
        json!({"v1": {"aliases": {"live": {}}}})
    );
    let missing_index = es.call(
        "POST",
        "/_aliases",
        Some(json!({"actions": [{"add": {"index": "v9", "alias": "x"}}]})),
    );
    assert_error(&missing_index, 404, "index_not_found_exception");
    let clash = es.call(
        "POST",
        "/_aliases",
        Some(json!({"actions": [{"add": {"index": "v2", "alias": "v1"}}]})),
    );
    assert_error(&clash, 400, "invalid_alias_name_exception");

    es.ok(
        "POST",
        "/_aliases",
        Some(json!({"actions": [
            {"remove": {"index": "v1", "alias": "live"}},
            {"add": {"index": "v2", "alias": "live"}}
        ]})),
    );
    assert_eq!(
        es.ok("POST", "/live/_search", Some(json!({"size": 0})))["hits"]["total"]["value"],
        3
    );
    // An alias may take the name of an index removed earlier in the same request.
    es.ok(
        "POST",
        "/_aliases",
        Some(json!({"actions": [{"remove_index": {"index": "v1"}}, {"add": {"index": "v2", "alias": "v1"}}]})),
    );
    assert_eq!(es.ok("GET", "/v1/_count", None)["count"], 3);

    let (status, body) = es.call("GET", "/_alias/nope", None);
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"error": "alias [nope] missing", "status": 404})
    );
    // A wildcard that matches no alias is not an error.
    assert_eq!(es.call("GET", "/v2/_alias/zz*", None), (200, json!({})));
    let all = es.ok("GET", "/_alias", None);
    assert!(all["v2"]["aliases"]["live"].is_object());
    let cat = es.ok("GET", "/_cat/aliases?format=json", None);
    assert_eq!(cat.as_array().unwrap().len(), 2);
}

#[test]
fn scrolls_page_in_doc_order_over_a_point_in_time() {
    let es = Es::new();
    es.server.seed("docs", 25);
    let first = es.ok(
        "POST",
        "/docs/_search?scroll=1m&size=10",
        Some(json!({"sort": ["_doc"], "query": {"match_all": {}}})),
    );
    assert_eq!(
        first["hits"]["total"],
        json!({"value": 25, "relation": "eq"})
    );
    let hits = first["hits"]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 10);
    assert_eq!(hits[0]["_id"], "0");
    assert_eq!(hits[0]["_type"], "_doc");
    assert_eq!(hits[0]["_source"]["title"], "doc 0");
    let id = first["_scroll_id"].as_str().unwrap().to_string();
    assert_eq!(es.server.open_scrolls(), 1);

    // Written after the scroll began: not part of it.
    es.ok(
        "PUT",
        "/docs/_doc/late?refresh=true",
        Some(json!({"title": "late"})),
    );

    let mut seen = 10;
    loop {
        let page = es.ok(
            "POST",
            "/_search/scroll",
            Some(json!({"scroll": "1m", "scroll_id": id})),
        );
        let n = page["hits"]["hits"].as_array().unwrap().len();
        if n == 0 {
            break;
        }
        assert_eq!(page["hits"]["hits"][0]["_id"], seen.to_string());
        seen += n;
    }
    assert_eq!(seen, 25);

    let cleared = es.ok(
        "DELETE",
        "/_search/scroll",
        Some(json!({"scroll_id": [id]})),
    );
    assert_eq!(cleared, json!({"succeeded": true, "num_freed": 1}));
    assert_eq!(es.server.open_scrolls(), 0);
    let gone = es.call(
        "POST",
        "/_search/scroll",
        Some(json!({"scroll": "1m", "scroll_id": id})),
    );
    assert_error(&gone, 404, "search_phase_execution_exception");
    assert_eq!(
        gone.1["error"]["root_cause"][0]["type"],
        "search_context_missing_exception"
    );
    let again = es.call("DELETE", "/_search/scroll", Some(json!({"scroll_id": id})));
    assert_eq!(again, (404, json!({"succeeded": true, "num_freed": 0})));
    let bad = es.call(
        "POST",
        "/_search/scroll",
        Some(json!({"scroll_id": "not-a-scroll"})),
    );
    assert_error(&bad, 400, "illegal_argument_exception");
}

#[test]
fn scrolls_expire_after_their_keep_alive_and_on_fault() {
    let es = Es::new();
    es.server.seed("docs", 30);
    let first = es.ok("GET", "/docs/_search?scroll=1s&size=5", None);
    let id = first["_scroll_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1400));
    assert_eq!(es.server.open_scrolls(), 0);
    let expired = es.call(
        "POST",
        "/_search/scroll",
        Some(json!({"scroll": "1s", "scroll_id": id})),
    );
    assert_eq!(
        expired.1["error"]["caused_by"]["type"],
        "search_context_missing_exception"
    );

    let first = es.ok("GET", "/docs/_search?scroll=1m&size=5", None);
    let id = first["_scroll_id"].as_str().unwrap().to_string();
    es.server.faults().expire_scrolls_after(2);
    for _ in 0..2 {
        es.ok(
            "POST",
            "/_search/scroll",
            Some(json!({"scroll": "1m", "scroll_id": id})),
        );
    }
    let vanished = es.call(
        "POST",
        "/_search/scroll",
        Some(json!({"scroll": "1m", "scroll_id": id})),
    );
    assert_error(&vanished, 404, "search_phase_execution_exception");

    es.server.faults().reject_search(1);
    assert_error(
        &es.call("GET", "/docs/_search", None),
        429,
        "es_rejected_execution_exception",
    );
    es.ok("GET", "/docs/_search", None);

    let first = es.ok("GET", "/docs/_search?scroll=1m&size=5", None);
    assert!(first["_scroll_id"].is_string());
    let all = es.ok("DELETE", "/_search/scroll/_all", None);
    assert_eq!(all["num_freed"], 1);
}

#[test]
fn bulk_reports_per_item_results_rejections_and_mapping_conflicts() {
    let es = Es::new();
    let body = concat!(
        "{\"index\":{\"_index\":\"b\",\"_id\":\"1\"}}\n{\"n\":1,\"t\":\"x\"}\n",
        "{\"index\":{\"_index\":\"b\",\"_id\":\"2\",\"routing\":\"r7\"}}\n{\"n\":2}\n",
        "{\"create\":{\"_index\":\"b\",\"_id\":\"1\"}}\n{\"n\":3}\n",
        "{\"index\":{\"_index\":\"b\",\"_id\":\"3\"}}\n{\"n\":\"not a number\"}\n",
        "{\"delete\":{\"_index\":\"b\",\"_id\":\"nope\"}}\n",
        "{\"update\":{\"_index\":\"b\",\"_id\":\"1\"}}\n{\"doc\":{\"t\":\"y\"}}\n",
    );
    let (status, resp) = es.bulk("/_bulk?refresh=true", body);
    assert_eq!(status, 200);
    assert_eq!(resp["errors"], true);
    let items = resp["items"].as_array().unwrap();
    assert_eq!(items[0]["index"]["status"], 201);
    assert_eq!(items[0]["index"]["result"], "created");
    assert_eq!(items[2]["create"]["status"], 409);
    assert_eq!(
        items[2]["create"]["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(items[3]["index"]["status"], 400);
    assert_eq!(
        items[3]["index"]["error"]["type"],
        "mapper_parsing_exception"
    );
    assert_eq!(items[4]["delete"]["status"], 404);
    assert_eq!(items[4]["delete"]["result"], "not_found");
    assert_eq!(items[5]["update"]["result"], "updated");
    let mapping = es.ok("GET", "/b/_mapping", None);
    assert_eq!(mapping["b"]["mappings"]["properties"]["n"]["type"], "long");

    let search = es.ok("GET", "/b/_search", None);
    let routed = search["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["_id"] == "2")
        .unwrap()
        .clone();
    assert_eq!(routed["_routing"], "r7");
    assert_eq!(
        es.ok("GET", "/b/_doc/1", None)["_source"],
        json!({"n": 1, "t": "y"})
    );

    es.server.faults().reject_bulk_items(1);
    let (status, resp) = es.bulk(
        "/b/_bulk",
        "{\"index\":{\"_id\":\"9\"}}\n{\"n\":9}\n{\"index\":{\"_id\":\"10\"}}\n{\"n\":10}\n",
    );
    assert_eq!(status, 200);
    assert_eq!(resp["errors"], true);
    assert_eq!(resp["items"][0]["index"]["status"], 429);
    assert_eq!(
        resp["items"][0]["index"]["error"]["type"],
        "es_rejected_execution_exception"
    );
    assert_eq!(resp["items"][1]["index"]["status"], 201);

    es.server.faults().reject_bulk(1);
    let whole = es.bulk("/b/_bulk", "{\"index\":{\"_id\":\"9\"}}\n{\"n\":9}\n");
    assert_error(&whole, 429, "es_rejected_execution_exception");
    let (status, resp) = es.bulk("/b/_bulk", "{\"index\":{\"_id\":\"9\"}}\n{\"n\":9}\n");
    assert_eq!((status, resp["errors"].clone()), (200, json!(false)));

    let unterminated = es.bulk("/b/_bulk", "{\"index\":{\"_id\":\"9\"}}\n{\"n\":9}");
    assert_error(&unterminated, 400, "illegal_argument_exception");
}

#[test]
fn injected_request_failures_use_es_error_bodies() {
    let es = Es::new();
    es.server.faults().fail_requests("GET", "/_cat", 503, 1);
    assert_error(
        &es.call("GET", "/_cat/indices?format=json", None),
        503,
        "cluster_block_exception",
    );
    es.ok("GET", "/_cat/indices?format=json", None);
    // The same over HTTP, for servers run as a separate process.
    es.ok(
        "POST",
        "/_cairn_test/faults",
        Some(
            json!({"fail_requests": [{"method": "*", "path_prefix": "/", "status": 500, "n": 1}]}),
        ),
    );
    assert_error(&es.call("GET", "/", None), 500, "exception");
    es.ok("GET", "/", None);
}

#[test]
fn basic_auth_is_enforced_when_configured() {
    let es = Es::with(Options {
        username: Some("elastic".into()),
        password: Some("changeme".into()),
        ..Options::default()
    });
    es.ok("GET", "/", None);
    let client = Client::new();
    let resp = client.get(es.server.url()).send().unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=\"security\"")
    );
    let body: Value = resp.json().unwrap();
    assert_eq!(body["error"]["type"], "security_exception");
    let wrong = client
        .get(es.server.url())
        .basic_auth("elastic", Some("nope"))
        .send()
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let body: Value = wrong.json().unwrap();
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("unable to authenticate user [elastic]")
    );
}

fn wait_for_state(es: &Es, path: &str) -> Value {
    for _ in 0..100 {
        let v = es.ok("GET", path, None);
        if v["snapshots"][0]["state"] != "IN_PROGRESS" {
            return v["snapshots"][0].clone();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("snapshot {path} never completed");
}

#[test]
fn snapshot_lifecycle_with_partial_failure_and_path_repo_refusal() {
    let es = Es::new();
    es.server.seed("a", 20);
    es.server.seed("b", 5);
    es.ok(
        "POST",
        "/_aliases",
        Some(json!({"actions": [{"add": {"index": "a", "alias": "a-live"}}]})),
    );

    let outside = es.call(
        "PUT",
        "/_snapshot/bad",
        Some(json!({"type": "fs", "settings": {"location": "/definitely/elsewhere"}})),
    );
    assert_error(&outside, 500, "repository_exception");
    assert!(
        outside.1["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("doesn't match any of the locations specified by path.repo")
    );

    es.ok(
        "PUT",
        "/_snapshot/backups",
        Some(json!({"type": "fs", "settings": {"location": "backups"}})),
    );
    let repo = es.ok("GET", "/_snapshot/backups", None);
    assert_eq!(repo["backups"]["type"], "fs");

    let accepted = es.ok(
        "PUT",
        "/_snapshot/backups/s1",
        Some(json!({"indices": "a,b", "include_global_state": false})),
    );
    assert_eq!(accepted, json!({"accepted": true}));
    let running = es.ok("GET", "/_snapshot/backups/s1", None);
    assert_eq!(running["snapshots"][0]["state"], "IN_PROGRESS");
    let done = wait_for_state(&es, "/_snapshot/backups/s1");
    assert_eq!(done["state"], "SUCCESS");
    assert_eq!(
        done["shards"],
        json!({"total": 2, "failed": 0, "successful": 2})
    );
    assert!(es.server.path_repo().join("backups/index.latest").exists());
    let status = es.ok("GET", "/_snapshot/backups/s1/_status", None);
    assert_eq!(status["snapshots"][0]["shards_stats"]["done"], 2);

    let dup = es.call(
        "PUT",
        "/_snapshot/backups/s1?wait_for_completion=true",
        None,
    );
    assert_error(&dup, 400, "invalid_snapshot_name_exception");

    es.server.faults().snapshot_outcome("PARTIAL", "disk full");
    let (status, partial) = es.call(
        "PUT",
        "/_snapshot/backups/s2?wait_for_completion=true",
        Some(json!({"indices": ["a", "b"]})),
    );
    assert_eq!(status, 200);
    let partial = &partial["snapshot"];
    assert_eq!(partial["state"], "PARTIAL");
    assert_eq!(partial["shards"]["failed"], 1);
    assert_eq!(partial["failures"][0]["reason"], "disk full");
    assert_eq!(partial["failures"][0]["index"], "a");

    es.server
        .faults()
        .snapshot_outcome("FAILED", "repository broke");
    let (status, failed) = es.call(
        "PUT",
        "/_snapshot/backups/s3?wait_for_completion=true",
        None,
    );
    assert_eq!(status, 500);
    assert_eq!(failed["snapshot"]["state"], "FAILED");
    let all = es.ok("GET", "/_snapshot/backups/_all", None);
    assert_eq!(all["snapshots"].as_array().unwrap().len(), 3);
    assert_error(
        &es.call("GET", "/_snapshot/backups/nope", None),
        404,
        "snapshot_missing_exception",
    );

    let clash = es.call(
        "POST",
        "/_snapshot/backups/s1/_restore?wait_for_completion=true",
        Some(json!({"indices": "a"})),
    );
    assert_error(&clash, 500, "snapshot_restore_exception");
    assert!(clash.1["error"]["reason"].as_str().unwrap().contains(
        "cannot restore index [a] because an open index with same name already exists in the cluster"
    ));
    let not_full = es.call(
        "POST",
        "/_snapshot/backups/s2/_restore",
        Some(json!({"indices": "a", "rename_pattern": "(.+)", "rename_replacement": "x_$1"})),
    );
    assert_error(&not_full, 500, "snapshot_restore_exception");

    let restored = es.ok(
        "POST",
        "/_snapshot/backups/s1/_restore?wait_for_completion=true",
        Some(json!({"indices": "a", "rename_pattern": "(.+)", "rename_replacement": "restored_$1", "include_aliases": false,
                    "index_settings": {"index.number_of_replicas": 0}})),
    );
    assert_eq!(restored["snapshot"]["indices"], json!(["restored_a"]));
    assert_eq!(es.ok("GET", "/restored_a/_count", None)["count"], 20);
    assert_eq!(
        es.ok("GET", "/restored_a/_settings", None)["restored_a"]["settings"]["index"]["number_of_replicas"],
        "0"
    );
    assert_eq!(
        es.ok("GET", "/restored_a/_alias", None),
        json!({"restored_a": {"aliases": {}}})
    );

    es.ok("DELETE", "/a", None);
    es.ok(
        "POST",
        "/_snapshot/backups/s1/_restore?wait_for_completion=true",
        Some(json!({"indices": "a"})),
    );
    assert_eq!(es.ok("GET", "/a-live/_count", None)["count"], 20);

    es.ok("DELETE", "/_snapshot/backups/s1", None);
    assert_error(
        &es.call("GET", "/_snapshot/backups/s1", None),
        404,
        "snapshot_missing_exception",
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn snapshot_files_survive_a_server_restart() -> TestResult {
    let path_repo = tempfile::tempdir()?;
    let archive = tempfile::tempdir()?;
    {
        let es = Es::with(Options {
            path_repo: Some(path_repo.path().to_path_buf()),
            ..Options::default()
        });
        es.server.seed("docs", 1234);
        es.ok(
            "PUT",
            "/docs/_doc/routed?routing=k1",
            Some(json!({"title": "routed"})),
        );
        es.ok(
            "PUT",
            "/_snapshot/r",
            Some(json!({"type": "fs", "settings": {"location": path_repo.path().join("r")}})),
        );
        let snap = es.ok("PUT", "/_snapshot/r/nightly?wait_for_completion=true", None);
        assert_eq!(snap["snapshot"]["state"], "SUCCESS");
    }
    // Archive the repository, wipe it, put it back.
    copy_dir(&path_repo.path().join("r"), &archive.path().join("r"));
    std::fs::remove_dir_all(path_repo.path().join("r"))?;
    copy_dir(&archive.path().join("r"), &path_repo.path().join("r"));

    let es = Es::with(Options {
        path_repo: Some(path_repo.path().to_path_buf()),
        ..Options::default()
    });
    es.ok(
        "PUT",
        "/_snapshot/r",
        Some(json!({"type": "fs", "settings": {"location": "r"}})),
    );
    let listed = es.ok("GET", "/_snapshot/r/_all", None);
    assert_eq!(listed["snapshots"][0]["snapshot"], "nightly");
    es.ok(
        "POST",
        "/_snapshot/r/nightly/_restore?wait_for_completion=true",
        Some(json!({"indices": "docs"})),
    );
    assert_eq!(es.ok("GET", "/docs/_count", None)["count"], 1235);
    let doc = es.ok("GET", "/docs/_doc/routed", None);
    assert_eq!(doc["_routing"], "k1");
    assert_eq!(es.ok("GET", "/docs/_doc/77", None)["_source"]["n"], 77);
    Ok(())
}
