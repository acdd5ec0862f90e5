//! The test double's version modes, TLS, security and the behaviours of real clusters that
//! make a restore fail elsewhere: over real HTTP(S) with reqwest.

use std::time::Duration;

use cairn_es_test_server::{
    ApiKey, ClientAuth, ELASTIC_PASSWORD, EsServer, Flavor, Options, Role, TlsOptions, Token, User,
};
use reqwest::blocking::{Client, ClientBuilder};
use serde_json::{Value, json};

/// A client trusting the server's CA (when it has one).
fn client_for(server: &EsServer) -> ClientBuilder {
    let mut b = Client::builder().timeout(Duration::from_secs(30));
    if let Some(ca) = server.ca_pem() {
        let pem = std::fs::read(ca).unwrap();
        b = b
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b
}

struct Es {
    server: EsServer,
    client: Client,
    auth: Option<String>,
}

impl Es {
    fn new(opts: Options) -> Es {
        let auth = opts.username.clone().map(|u| {
            use base64::Engine;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{u}:{}", opts.password.clone().unwrap_or_default()))
            )
        });
        let server = EsServer::start(opts);
        let client = client_for(&server).build().unwrap();
        Es {
            server,
            client,
            auth,
        }
    }

    fn call_as(
        &self,
        auth: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(
            method.parse().unwrap(),
            format!("{}{path}", self.server.url()),
        );
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        if let Some(b) = body {
            let ndjson = path.contains("_bulk");
            req = req
                .header(
                    "content-type",
                    if ndjson {
                        "application/x-ndjson"
                    } else {
                        "application/json"
                    },
                )
                .body(match b {
                    Value::String(s) => s,
                    other => other.to_string(),
                });
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(self.auth.as_deref(), method, path, body)
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
    assert_eq!(body["error"]["type"], kind, "{body}");
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[test]
fn es8_serves_https_with_its_own_ca_and_requires_authentication() {
    let es = Es::new(Options::es8());
    assert!(es.server.url().starts_with("https://127.0.0.1:"));
    let fp = es.server.ca_fingerprint().unwrap();
    assert_eq!(fp.len(), 32 * 3 - 1, "{fp}");
    let root = es.ok("GET", "/", None);
    assert_eq!(root["version"]["number"], "8.15.0");
    assert_eq!(es.server.flavor(), Flavor::Elasticsearch8);

    // Without the CA the certificate is not trusted.
    let untrusted = Client::builder()
        .build()
        .unwrap()
        .get(es.server.url())
        .send();
    assert!(untrusted.is_err(), "an unknown CA was trusted");
    // Plain HTTP to the HTTPS port does not get an answer.
    let plain = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(es.server.url().replace("https", "http"))
        .send();
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // Security on: no credentials, no answer.
    assert_error(
        &es.call_as(None, "GET", "/", None),
        401,
        "security_exception",
    );
    assert_error(
        &es.call_as(Some(&basic("elastic", "wrong")), "GET", "/", None),
        401,
        "security_exception",
    );
    assert_eq!(
        es.call_as(Some(&basic("elastic", ELASTIC_PASSWORD)), "GET", "/", None)
            .0,
        200
    );

    // No types in 8.x.
    es.server.seed("docs", 3);
    let hits = es.ok("GET", "/docs/_search", None);
    assert!(hits["hits"]["hits"][0].get("_type").is_none(), "{hits}");
    assert_error(
        &es.call("GET", "/docs/_mapping?include_type_name=true", None),
        400,
        "illegal_argument_exception",
    );
    let bulk = es.ok(
        "POST",
        "/_bulk",
        Some(Value::String(
            "{\"index\":{\"_index\":\"docs\",\"_id\":\"x\"}}\n{\"n\":1}\n".into(),
        )),
    );
    assert!(bulk["items"][0]["index"].get("_type").is_none(), "{bulk}");
    // `action.destructive_requires_name` is on by default in 8.x.
    assert_error(
        &es.call("DELETE", "/doc*", None),
        400,
        "illegal_argument_exception",
    );
    es.ok("DELETE", "/docs", None);
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let es = Es::new(Options {
        tls: Some(TlsOptions {
            client_auth: ClientAuth::Required,
        }),
        ..Options::es7()
    });
    // The trusting client has no certificate: the handshake fails.
    assert!(es.client.get(es.server.url()).send().is_err());
    let (cert, key) = es.server.client_cert().unwrap();
    let identity = |cert: &std::path::Path, key: &std::path::Path| {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        reqwest::Identity::from_pem(&pem).unwrap()
    };
    let with_cert = client_for(&es.server)
        .identity(identity(cert, key))
        .build()
        .unwrap();
    let resp = with_cert.get(es.server.url()).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (fcert, fkey) = es.server.foreign_client_cert().unwrap();
    let foreign = client_for(&es.server)
        .identity(identity(fcert, fkey))
        .build()
        .unwrap();
    assert!(
        foreign.get(es.server.url()).send().is_err(),
        "a foreign client certificate was accepted"
    );
}

#[test]
fn api_keys_and_bearer_tokens_authenticate() {
    let key = ApiKey {
        id: "VuaCfGcBCdbkQm-e5aOx".into(),
        key: "ui2lp2axTNmsyakw9tvNnw".into(),
        role: Role::superuser(),
    };
    let es = Es::new(Options {
        api_keys: vec![key.clone()],
        tokens: vec![Token {
            token: "dGhpcyBpcyBub3QgYSByZWFsIHRva2Vu".into(),
            principal: "elastic/fleet-server".into(),
            role: Role::superuser(),
        }],
        ..Options::es7()
    });
    assert_eq!(
        es.call_as(Some(&format!("ApiKey {}", key.encoded())), "GET", "/", None)
            .0,
        200
    );
    assert_error(
        &es.call_as(Some("ApiKey bm9wZTpub3Bl"), "GET", "/", None),
        401,
        "security_exception",
    );
    assert_eq!(
        es.call_as(
            Some("Bearer dGhpcyBpcyBub3QgYSByZWFsIHRva2Vu"),
            "GET",
            "/",
            None
        )
        .0,
        200
    );
    assert_error(
        &es.call_as(Some("Bearer nope"), "GET", "/", None),
        401,
        "security_exception",
    );
}

#[test]
fn a_least_privilege_user_gets_403_on_root_and_sees_only_its_indices() {
    let backup = User {
        name: "backup".into(),
        password: "backup-pw".into(),
        role: Role::new(&[], &[("app-*", &["read", "view_index_metadata"])]),
    };
    let es = Es::new(Options {
        username: Some("elastic".into()),
        password: Some("pw".into()),
        users: vec![backup],
        ..Options::es7()
    });
    es.server.seed("app-1", 5);
    es.server.seed("other", 2);
    let me = basic("backup", "backup-pw");
    let me = Some(me.as_str());
    let root = es.call_as(me, "GET", "/", None);
    assert_error(&root, 403, "security_exception");
    assert!(
        root.1["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("cluster:monitor/main")
    );
    // `_cat/indices` needs `monitor`: a wildcard quietly shows nothing.
    let (status, cat) = es.call_as(me, "GET", "/_cat/indices/*?format=json", None);
    assert_eq!((status, cat), (200, json!([])));
    // The resolve API needs `view_index_metadata`: it shows what the user may read.
    let (status, resolved) = es.call_as(me, "GET", "/_resolve/index/*", None);
    assert_eq!(status, 200);
    assert_eq!(
        resolved["indices"],
        json!([{"name": "app-1", "attributes": ["open"]}])
    );
    assert_eq!(es.call_as(me, "GET", "/app-1/_count", None).1["count"], 5);
    assert_eq!(es.call_as(me, "GET", "/*/_count", None).1["count"], 5);
    assert_error(
        &es.call_as(me, "GET", "/other/_count", None),
        403,
        "security_exception",
    );
    let (_, bulk) = es.call_as(
        me,
        "POST",
        "/_bulk",
        Some(Value::String(
            "{\"index\":{\"_index\":\"app-1\",\"_id\":\"9\"}}\n{\"n\":9}\n".into(),
        )),
    );
    assert_eq!(bulk["items"][0]["index"]["status"], 403, "{bulk}");
}

#[test]
fn settings_are_validated_as_real_clusters_do() {
    let es = Es::new(Options::es7());
    for bad in [
        json!({"index.translog.disable_flush": true}),
        json!({"archived.index.foo": "bar"}),
        json!({"index": {"mapper": {"dynamic": false}}}),
    ] {
        let r = es.call("PUT", "/a", Some(json!({"settings": bad})));
        assert_error(&r, 400, "illegal_argument_exception");
        assert!(
            r.1["error"]["reason"]
                .as_str()
                .unwrap()
                .starts_with("unknown setting ["),
            "{}",
            r.1
        );
    }
    let private = es.call(
        "PUT",
        "/a",
        Some(json!({"settings": {"index.version.created": "7170099"}})),
    );
    assert!(
        private.1["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("private index setting")
    );
    es.ok(
        "PUT",
        "/a",
        Some(json!({"settings": {"index.lifecycle.name": "absent-policy"}})),
    );

    let os = Es::new(Options::opensearch2());
    let root = os.ok("GET", "/", None);
    assert_eq!(root["version"]["distribution"], "opensearch");
    let resp = os.client.get(os.server.url()).send().unwrap();
    assert!(resp.headers().get("x-elastic-product").is_none());
    let ilm = os.call(
        "PUT",
        "/b",
        Some(json!({"settings": {"index.lifecycle.name": "p"}})),
    );
    assert_error(&ilm, 400, "illegal_argument_exception");
    assert_eq!(os.call("GET", "/_ilm/policy", None).0, 400);
    // A data tier preference names an attribute no OpenSearch node has: the index is red.
    os.ok(
        "PUT",
        "/c",
        Some(json!({"settings": {"index.routing.allocation.include._tier_preference": "data_content"}})),
    );
    assert_eq!(os.ok("GET", "/_cluster/health/c", None)["status"], "red");
}

#[test]
fn allocation_filters_no_node_matches_make_an_index_red() {
    let es = Es::new(Options::es7());
    let created = es.ok(
        "PUT",
        "/hot",
        Some(json!({"settings": {"index.routing.allocation.require.box_type": "hot", "number_of_replicas": 0}})),
    );
    assert_eq!(created["shards_acknowledged"], false);
    assert_eq!(es.ok("GET", "/_cluster/health/hot", None)["status"], "red");
    let (_, bulk) = es.call(
        "POST",
        "/_bulk",
        Some(Value::String(
            "{\"index\":{\"_index\":\"hot\",\"_id\":\"1\"}}\n{\"n\":1}\n".into(),
        )),
    );
    assert_eq!(bulk["items"][0]["index"]["status"], 503, "{bulk}");
    assert_eq!(
        bulk["items"][0]["index"]["error"]["type"],
        "unavailable_shards_exception"
    );
    assert_error(
        &es.call("GET", "/hot/_search", None),
        503,
        "search_phase_execution_exception",
    );
    es.ok(
        "PUT",
        "/hot/_settings",
        Some(json!({"index.routing.allocation.require.box_type": null})),
    );
    assert_eq!(
        es.ok("GET", "/_cluster/health/hot", None)["status"],
        "green"
    );
    es.ok(
        "PUT",
        "/named",
        Some(json!({"settings": {"index.routing.allocation.require._name": "cairn-test-node"}})),
    );
    assert_ne!(
        es.ok("GET", "/_cluster/health/named", None)["status"],
        "red"
    );
}

#[test]
fn closed_and_hidden_indices_behave_as_in_elasticsearch() {
    let es = Es::new(Options::es7());
    es.server.seed("open-1", 3);
    es.server.seed("shut", 2);
    es.ok(
        "PUT",
        "/secret",
        Some(json!({"settings": {"index.hidden": true}})),
    );
    es.ok("POST", "/shut/_close", None);
    assert_eq!(es.server.is_closed("shut"), Some(true));
    assert_error(
        &es.call("GET", "/shut/_search", None),
        400,
        "index_closed_exception",
    );
    assert_eq!(es.ok("GET", "/*/_count", None)["count"], 3);
    let cat = es.ok("GET", "/_cat/indices?format=json&h=index,status", None);
    assert!(
        cat.as_array()
            .unwrap()
            .iter()
            .any(|r| r["index"] == "shut" && r["status"] == "close"),
        "{cat}"
    );
    let resolved = es.ok("GET", "/_resolve/index/*?expand_wildcards=all", None);
    let names: Vec<(String, Value)> = resolved["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["attributes"].clone(),
            )
        })
        .collect();
    assert!(
        names.contains(&("shut".into(), json!(["closed"]))),
        "{resolved}"
    );
    assert!(
        names.contains(&("secret".into(), json!(["open", "hidden"]))),
        "{resolved}"
    );
    let default = es.ok("GET", "/_resolve/index/*", None);
    assert_eq!(default["indices"].as_array().unwrap().len(), 1, "{default}");
    es.ok("POST", "/shut/_open", None);
    assert_eq!(es.ok("GET", "/shut/_count", None)["count"], 2);
}

#[test]
fn data_streams_templates_and_ilm_policies() {
    let es = Es::new(Options::es7());
    es.ok(
        "PUT",
        "/_ilm/policy/logs-policy",
        Some(json!({"policy": {"phases": {"hot": {"actions": {}}}}})),
    );
    assert_eq!(
        es.ok("GET", "/_ilm/policy/logs-policy", None)["logs-policy"]["version"],
        1
    );
    es.ok(
        "PUT",
        "/_component_template/logs-mappings",
        Some(json!({"template": {"mappings": {"properties": {"message": {"type": "text"}}}}})),
    );
    assert_error(
        &es.call(
            "PUT",
            "/_index_template/bad",
            Some(json!({"index_patterns": ["x-*"], "template": {"settings": {"index.bogus": 1}}})),
        ),
        400,
        "illegal_argument_exception",
    );
    es.ok(
        "PUT",
        "/_index_template/logs",
        Some(json!({"index_patterns": ["logs-*"], "data_stream": {}, "composed_of": ["logs-mappings"], "priority": 200,
                    "template": {"settings": {"index.lifecycle.name": "logs-policy"}}})),
    );
    es.ok(
        "PUT",
        "/_index_template/plain",
        Some(json!({"index_patterns": ["plain-*"], "template": {"settings": {"number_of_replicas": 0}, "aliases": {"plain": {}}}})),
    );
    es.ok("PUT", "/plain-1", None);
    let plain = es.ok("GET", "/plain-1", None);
    assert_eq!(
        plain["plain-1"]["settings"]["index"]["number_of_replicas"],
        "0"
    );
    assert!(plain["plain-1"]["aliases"]["plain"].is_object());
    assert_error(
        &es.call("PUT", "/logs-app", None),
        400,
        "illegal_argument_exception",
    );

    let (_, bulk) = es.call(
        "POST",
        "/_bulk",
        Some(Value::String(concat!(
            "{\"create\":{\"_index\":\"logs-app\",\"_id\":\"1\"}}\n{\"@timestamp\":\"2026-01-01T00:00:00Z\",\"message\":\"a\"}\n",
            "{\"index\":{\"_index\":\"logs-app\",\"_id\":\"2\"}}\n{\"@timestamp\":\"2026-01-01T00:00:00Z\"}\n",
            "{\"create\":{\"_index\":\"logs-app\",\"_id\":\"3\"}}\n{\"message\":\"no timestamp\"}\n",
        ).into())),
    );
    assert_eq!(bulk["items"][0]["create"]["status"], 201, "{bulk}");
    assert_eq!(bulk["items"][1]["index"]["status"], 400, "{bulk}");
    assert_eq!(bulk["items"][2]["create"]["status"], 400, "{bulk}");
    es.ok("POST", "/logs-app/_rollover", None);
    let ds = es.ok("GET", "/_data_stream/logs-app", None);
    let backing = ds["data_streams"][0]["indices"].as_array().unwrap();
    assert_eq!(backing.len(), 2, "{ds}");
    assert!(
        backing[0]["index_name"]
            .as_str()
            .unwrap()
            .starts_with(".ds-logs-app-")
    );
    assert_eq!(es.ok("GET", "/logs-app/_count", None)["count"], 1);
    let first = backing[0]["index_name"].as_str().unwrap().to_string();
    let settings = es.ok("GET", &format!("/{first}/_settings"), None);
    assert_eq!(settings[&first]["settings"]["index"]["hidden"], "true");
    assert_eq!(
        settings[&first]["settings"]["index"]["lifecycle"]["name"],
        "logs-policy"
    );
    let resolved = es.ok("GET", "/_resolve/index/logs-*", None);
    assert_eq!(
        resolved["data_streams"][0]["name"], "logs-app",
        "{resolved}"
    );
    es.ok("DELETE", "/_data_stream/logs-app", None);
    assert_eq!(es.call("GET", "/_data_stream/logs-app", None).0, 404);
}

#[test]
fn injected_partial_results_concurrent_snapshots_and_lost_writes() {
    let es = Es::new(Options::es7());
    es.server.seed("docs", 40);
    es.server.faults().shard_failures(1);
    let page = es.ok("GET", "/docs/_search?scroll=1m&size=10", None);
    assert_eq!(page["_shards"]["failed"], 1);
    assert_eq!(page["hits"]["hits"].as_array().unwrap().len(), 5);
    es.server.faults().search_timeouts(1);
    let id = page["_scroll_id"].as_str().unwrap();
    let next = es.ok(
        "POST",
        "/_search/scroll",
        Some(json!({"scroll": "1m", "scroll_id": id})),
    );
    assert_eq!(next["timed_out"], true);
    assert_eq!(next["hits"]["hits"].as_array().unwrap().len(), 5);

    es.ok(
        "PUT",
        "/_snapshot/r",
        Some(json!({"type": "fs", "settings": {"location": "r"}})),
    );
    es.server.faults().concurrent_snapshot_errors(1);
    assert_error(
        &es.call("PUT", "/_snapshot/r/s1", None),
        503,
        "concurrent_snapshot_execution_exception",
    );
    es.ok("PUT", "/_snapshot/r/s1?wait_for_completion=true", None);

    es.server.faults().drop_acknowledged_writes(2);
    let (_, bulk) = es.call(
        "POST",
        "/_bulk",
        Some(Value::String(
            (0..4)
                .map(|i| {
                    format!(
                        "{{\"index\":{{\"_index\":\"lossy\",\"_id\":\"{i}\"}}}}\n{{\"n\":{i}}}\n"
                    )
                })
                .collect(),
        )),
    );
    assert_eq!(bulk["errors"], false);
    assert_eq!(es.ok("GET", "/lossy/_count", None)["count"], 2);
}

#[test]
fn deleting_a_running_snapshot_aborts_it() {
    let es = Es::new(Options {
        snapshot_delay: Duration::from_secs(3600),
        ..Options::es7()
    });
    es.server.seed("docs", 3);
    es.ok(
        "PUT",
        "/_snapshot/r",
        Some(json!({"type": "fs", "settings": {"location": "r"}})),
    );
    es.ok("PUT", "/_snapshot/r/stuck", None);
    assert_eq!(
        es.ok("GET", "/_snapshot/r/stuck", None)["snapshots"][0]["state"],
        "IN_PROGRESS"
    );
    es.ok("DELETE", "/_snapshot/r/stuck", None);
    assert_eq!(es.call("GET", "/_snapshot/r/stuck", None).0, 404);
}
