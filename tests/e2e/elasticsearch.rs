//! End-to-end tests of `builtin:elasticsearch-dump`: the real `cairn`
//! binary dumping indices into a repository and restoring them, against
//! the Elasticsearch test server (`cairn-es-test-server`, a faithful double
//! of the REST subset used, in its 7.x, 8.x and OpenSearch modes, over HTTP
//! or HTTPS with its own CA) or, when `CAIRN_ES_URL` is set, a real cluster
//! (see `es_cluster.rs` for the CA and credentials variables). Tests that
//! inject faults, or need a version or security setup of their own, skip on
//! a real cluster, saying so; every test uses its own index names.

use std::collections::BTreeMap;

use anyhow::Context as _;
use cairn_es_test_server::Options;
use serde_json::{Value, json};

use crate::es_cluster::{Cluster, Tls};
use crate::support::{CliOutput, Scratch, cairn_with_env};

/// The repository password of every test.
const PASSWORD: &str = "correct horse battery staple";
const PASSWORD_ENV: &str = "CAIRN_TEST_PASSWORD";
/// The secret holding the real cluster's `Authorization` header, if any.
const AUTH_SECRET: &str = "CAIRN_TEST_ES_AUTH";

/// A fresh test server (or the real cluster) for `test`: Elasticsearch
/// 7.17, validating settings as a real cluster does.
fn cluster(test: &str) -> anyhow::Result<Cluster> {
    cluster_with(test, Options::es7())
}

fn cluster_with(test: &str, options: Options) -> anyhow::Result<Cluster> {
    Cluster::start("e2e", test, options)
}

impl Cluster {
    /// Index `docs` (`(id, routing, source)`) into `index` with one `_bulk`.
    fn index_docs(
        &self,
        index: &str,
        docs: &[(String, Option<String>, Value)],
    ) -> anyhow::Result<()> {
        let mut body = String::new();
        for (id, routing, source) in docs {
            let mut action = json!({ "index": { "_index": index, "_id": id } });
            if let Some(r) = routing {
                action["index"]["routing"] = json!(r);
            }
            body.push_str(&format!("{action}\n{source}\n"));
        }
        let response = self.ok("POST", "/_bulk?refresh=true", Some(&Value::String(body)))?;
        anyhow::ensure!(response["errors"] == false, "bulk failed: {response}");
        Ok(())
    }

    /// Every document of `index` (or alias): id → (routing, source).
    fn documents(&self, index: &str) -> anyhow::Result<BTreeMap<String, (Option<String>, Value)>> {
        self.ok("POST", &format!("/{index}/_refresh"), None)?;
        let page = self.ok(
            "POST",
            &format!("/{index}/_search"),
            Some(&json!({ "size": 10000, "query": { "match_all": {} }, "sort": ["_doc"] })),
        )?;
        let hits = page["hits"]["hits"].as_array().context("hits")?;
        Ok(hits
            .iter()
            .map(|h| {
                (
                    h["_id"].as_str().unwrap_or_default().to_owned(),
                    (
                        h["_routing"].as_str().map(str::to_owned),
                        h["_source"].clone(),
                    ),
                )
            })
            .collect())
    }

    /// `_count` of `index`.
    fn count(&self, index: &str) -> anyhow::Result<u64> {
        self.ok("POST", &format!("/{index}/_refresh"), None)?;
        self.ok("GET", &format!("/{index}/_count"), None)?["count"]
            .as_u64()
            .context("count")
    }

    /// The indices holding `alias`, sorted.
    fn alias_holders(&self, alias: &str) -> anyhow::Result<Vec<String>> {
        let (status, value) = self.call("GET", &format!("/_alias/{alias}"), None)?;
        if status == 404 {
            return Ok(Vec::new());
        }
        let mut holders: Vec<String> = value
            .as_object()
            .context("aliases")?
            .iter()
            .filter(|(_, v)| v["aliases"].get(alias).is_some())
            .map(|(k, _)| k.clone())
            .collect();
        holders.sort();
        Ok(holders)
    }

    /// Whether a concrete index `index` exists.
    fn index_exists(&self, index: &str) -> anyhow::Result<bool> {
        let (status, value) = self.call("GET", &format!("/{index}"), None)?;
        Ok(status == 200 && value.get(index).is_some())
    }

    /// Scroll contexts left open (0 on a real cluster, where it is not known).
    fn open_scrolls(&self) -> usize {
        self.server
            .as_ref()
            .map_or(0, cairn_es_test_server::EsServer::open_scrolls)
    }

    /// `[repository]`, `[state]` and job `es` running the module with
    /// `params` (TOML inline-table entries) plus `url` and, for a real
    /// cluster with auth, `authorization-secret`.
    fn config(&self, params: &str) -> String {
        let mut params = format!("url = {:?}, {params}", self.url);
        let mut secrets = String::new();
        let bind = |name: &str| {
            format!(
                "secrets.{name} = {{ header = \"Authorization\", origins = [{:?}] }}\n",
                self.origin()
            )
        };
        if self.auth.is_some() && !params.contains("secret") {
            params.push_str(&format!(", authorization-secret = {AUTH_SECRET:?}"));
            secrets = bind(AUTH_SECRET);
        }
        if params.contains("password-secret") {
            secrets = bind("ES_PASSWORD");
        }
        format!(
            "[repository]\npath = \"repo\"\npassword-env = \"{PASSWORD_ENV}\"\n\n[state]\npath = \"state.db\"\n\n\
             [jobs.es]\ntask = \"builtin:elasticsearch-dump\"\nparams = {{ {params} }}\n\n\
             [jobs.es.allow]\nhttp = [{:?}]\n{secrets}{}",
            self.origin(),
            self.tls_toml("es")
        )
    }
}

/// `cairn ARGS` in the scratch dir with the repository password and the
/// real cluster's auth.
fn cairn(scratch: &Scratch, cluster: &Cluster, args: &[&str]) -> anyhow::Result<CliOutput> {
    let auth = cluster.auth.clone().unwrap_or_default();
    cairn_with_env(
        args,
        scratch.dir.path(),
        &[(PASSWORD_ENV, PASSWORD), (AUTH_SECRET, &auth)],
    )
}

/// `cairn --json backup es`, which must succeed: (snapshot id, task result).
fn backup(scratch: &Scratch, cluster: &Cluster) -> anyhow::Result<(String, Value)> {
    let out = cairn(scratch, cluster, &["--json", "backup", "es"])?;
    out.expect_code(0)?;
    let report = out.json()?;
    let id = report["run"]["snapshot_id"]
        .as_str()
        .with_context(|| format!("no snapshot id\n{out}"))?
        .to_owned();
    Ok((id, result_of(&report)?))
}

/// `cairn --json restore es ARGS`, which must succeed: the task result.
fn restore(scratch: &Scratch, cluster: &Cluster, args: &[&str]) -> anyhow::Result<Value> {
    let mut all = vec!["--json", "restore", "es"];
    all.extend(args);
    let out = cairn(scratch, cluster, &all)?;
    out.expect_code(0)?;
    result_of(&out.json()?)
}

/// A run that must fail: its error message.
fn fails(scratch: &Scratch, cluster: &Cluster, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["--json"];
    all.extend(args);
    let out = cairn(scratch, cluster, &all)?;
    anyhow::ensure!(out.code != Some(0), "expected a failure\n{out}");
    let report = out.json().unwrap_or(Value::Null);
    Ok(report["run"]["error"]
        .as_str()
        .map_or_else(|| format!("{}{}", out.stdout, out.stderr), str::to_owned))
}

/// The task's result in a run report (stored as JSON or as text).
fn result_of(report: &Value) -> anyhow::Result<Value> {
    match &report["result"] {
        Value::String(text) => Ok(serde_json::from_str(text)?),
        Value::Null => anyhow::bail!("no result in {report}"),
        other => Ok(other.clone()),
    }
}

/// The number of snapshots in the repository (0 when it does not exist yet).
fn snapshot_count(scratch: &Scratch, cluster: &Cluster) -> anyhow::Result<usize> {
    let out = cairn(scratch, cluster, &["--json", "snapshots"])?;
    if out.code != Some(0) {
        return Ok(0);
    }
    Ok(out.json()?.as_array().map_or(0, Vec::len))
}

/// The index a restore of `snapshot` writes for `alias`, from the backup
/// result's `dumped-at`.
fn restored_name(alias: &str, backup_result: &Value, snapshot: &str) -> String {
    let stamp: String = backup_result["dumped-at"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("{alias}-{stamp}-{}", &snapshot[..8])
}

/// `n` small documents `{"title": "doc i", "n": i}` with ids `prefix-i`.
fn simple_docs(prefix: &str, n: usize) -> Vec<(String, Option<String>, Value)> {
    (0..n)
        .map(|i| {
            (
                format!("{prefix}-{i}"),
                None,
                json!({ "title": format!("doc {i}"), "n": i }),
            )
        })
        .collect()
}

#[test]
fn dump_and_restore_round_trip_settings_mappings_aliases_routing_and_sources() -> anyhow::Result<()>
{
    let es = cluster("round-trip")?;
    let products = es.name("products_v1");
    let (alias, shop) = (es.name("products"), es.name("shop"));
    let orders = es.name("orders");
    let empty = es.name("empty");
    es.ok(
        "PUT",
        &format!("/{products}"),
        Some(&json!({
            "settings": {
                "number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "2s",
                "analysis": { "analyzer": { "folded": { "type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"] } } }
            },
            "mappings": { "properties": {
                "title": { "type": "text", "analyzer": "folded" },
                "price": { "type": "float" },
                "tags": { "type": "keyword" }
            } },
            "aliases": { alias.clone(): {}, shop.clone(): { "filter": { "term": { "tags": "sale" } } } }
        })),
    )?;
    let mut docs: Vec<(String, Option<String>, Value)> = (0..120)
        .map(|i| {
            let routing = (i % 3 == 0).then(|| format!("r{}", i % 2));
            let source = json!({
                "title": format!("Crème brûlée n°{i} \"quoted\"\nsecond line"),
                "price": f64::from(i) + 0.25,
                "tags": if i % 4 == 0 { vec!["sale", "new"] } else { vec!["new"] },
            });
            (format!("p-{i}"), routing, source)
        })
        .collect();
    docs.push((
        "id with spaces/ünïcode".into(),
        None,
        json!({ "title": "odd id" }),
    ));
    es.index_docs(&products, &docs)?;
    // A document indexed pretty-printed: its source spans lines.
    es.ok(
        "PUT",
        &format!("/{products}/_doc/pretty?refresh=true"),
        Some(&Value::String(
            "{\n  \"title\": \"pretty\",\n  \"price\": 1.5\n}".into(),
        )),
    )
    .or_else(|_| {
        es.ok(
            "PUT",
            &format!("/{products}/_doc/pretty?refresh=true"),
            Some(&json!({ "title": "pretty", "price": 1.5 })),
        )
    })?;
    es.index_docs(&orders, &simple_docs("o", 35))?;
    es.ok("PUT", &format!("/{empty}"), Some(&json!({})))?;
    let before_products = es.documents(&products)?;
    let before_orders = es.documents(&orders)?;
    let mappings_before =
        es.ok("GET", &format!("/{products}"), None)?[&products]["mappings"].clone();
    anyhow::ensure!(before_products.len() == 122, "{}", before_products.len());

    let scratch = Scratch::new()?;
    scratch
        .write_config(&es.config(&format!("indices = [\"{}-*\"], batch-size = 25", es.prefix)))?;
    let (snapshot, result) = backup(&scratch, &es)?;
    anyhow::ensure!(result["documents"] == 157, "{result}");
    anyhow::ensure!(result["indices"][&products] == 122, "{result}");
    anyhow::ensure!(result["indices"][&orders] == 35, "{result}");
    anyhow::ensure!(result["indices"][&empty] == 0, "{result}");
    anyhow::ensure!(
        es.open_scrolls() == 0,
        "scrolls left open: {}",
        es.open_scrolls()
    );

    // `orders` and `empty` had no alias: they are restored behind aliases
    // of their own names, which the original concrete indices block.
    let error = fails(&scratch, &es, &["restore", "es"])?;
    anyhow::ensure!(
        error.contains(&format!(
            "has a concrete index named `{empty}`, a concrete index named `{orders}`"
        )) && error.contains("replace-index = true")
            && error.contains("nothing was written"),
        "{error}"
    );
    let new_products = restored_name(&alias, &result, &snapshot);
    anyhow::ensure!(
        !es.index_exists(&new_products)?,
        "the refused restore created {new_products}"
    );

    let restored = restore(&scratch, &es, &["--set", "replace-index=true"])?;
    anyhow::ensure!(restored["documents"] == 157, "{restored}");
    let new_orders = restored_name(&orders, &result, &snapshot);
    let new_empty = restored_name(&empty, &result, &snapshot);
    for new in [&new_products, &new_orders, &new_empty] {
        anyhow::ensure!(
            es.index_exists(new)?,
            "{new} missing after restore: {restored}"
        );
    }
    anyhow::ensure!(es.alias_holders(&alias)? == std::slice::from_ref(&new_products));
    anyhow::ensure!(es.alias_holders(&shop)? == std::slice::from_ref(&new_products));
    anyhow::ensure!(es.alias_holders(&orders)? == std::slice::from_ref(&new_orders));
    // The old products index is intact; the original `orders` was replaced.
    anyhow::ensure!(es.documents(&products)? == before_products);

    anyhow::ensure!(
        es.documents(&alias)? == before_products,
        "products differ after restore"
    );
    anyhow::ensure!(
        es.documents(&orders)? == before_orders,
        "orders differ after restore"
    );
    anyhow::ensure!(es.count(&new_empty)? == 0);

    let info = &es.ok("GET", &format!("/{new_products}"), None)?[&new_products];
    let settings = &info["settings"]["index"];
    anyhow::ensure!(
        settings["refresh_interval"] == "2s",
        "refresh_interval not put back: {settings}"
    );
    anyhow::ensure!(settings["number_of_replicas"] == "0", "{settings}");
    anyhow::ensure!(
        settings["analysis"]["analyzer"]["folded"]["tokenizer"] == "standard",
        "analysis lost: {settings}"
    );
    anyhow::ensure!(
        info["mappings"] == mappings_before,
        "mappings differ: {}",
        info["mappings"]
    );
    anyhow::ensure!(
        info["aliases"][&shop]["filter"]["term"]["tags"] == "sale",
        "alias filter lost: {}",
        info["aliases"]
    );
    Ok(())
}

#[test]
fn restore_moves_the_alias_in_one_call_and_a_rerun_is_additive() -> anyhow::Result<()> {
    let es = cluster("alias-swap")?;
    let (old, alias) = (es.name("catalog_v1"), es.name("catalog"));
    es.ok(
        "PUT",
        &format!("/{old}"),
        Some(&json!({ "aliases": { alias.clone(): {} } })),
    )?;
    es.index_docs(&old, &simple_docs("c", 30))?;
    let scratch = Scratch::new()?;
    scratch.write_config(&es.config(&format!("indices = {old:?}, batch-size = 7")))?;
    let (snapshot, result) = backup(&scratch, &es)?;
    let new = restored_name(&alias, &result, &snapshot);

    // (Only on the double: a real cluster cannot be made to fail the call.)
    if let Some(faults) = es
        .server
        .as_ref()
        .map(cairn_es_test_server::EsServer::faults)
    {
        // The alias switch fails: the new index is loaded, the alias has not moved.
        faults.fail_requests("POST", "/_aliases", 500, 1);
        let error = fails(&scratch, &es, &["restore", "es", "--set", "retries=0"])?;
        anyhow::ensure!(error.contains("moving the aliases"), "{error}");
        anyhow::ensure!(es.alias_holders(&alias)? == std::slice::from_ref(&old));
        anyhow::ensure!(es.count(&new)? == 30);
    }

    let restored = restore(&scratch, &es, &[])?;
    anyhow::ensure!(
        restored["indices"][0]["index"] == new.as_str(),
        "{restored}"
    );
    anyhow::ensure!(es.alias_holders(&alias)? == std::slice::from_ref(&new));
    anyhow::ensure!(es.count(&old)? == 30, "the old index changed");
    anyhow::ensure!(es.count(&new)? == 30);

    // The same restore again: same index, no duplicates, alias unchanged.
    let again = restore(&scratch, &es, &["--snapshot", &snapshot])?;
    anyhow::ensure!(again["indices"][0]["index"] == new.as_str(), "{again}");
    anyhow::ensure!(again["indices"][0]["created"] == false, "{again}");
    anyhow::ensure!(es.count(&new)? == 30);
    anyhow::ensure!(es.alias_holders(&alias)? == [new]);
    Ok(())
}

#[test]
fn restore_rerun_after_a_mid_load_failure_has_no_duplicates() -> anyhow::Result<()> {
    let es = double("rerun", Options::es7())?;
    let faults = es.faults()?;
    let (index, alias) = (es.name("events_v1"), es.name("events"));
    es.ok(
        "PUT",
        &format!("/{index}"),
        Some(&json!({ "aliases": { alias.clone(): {} } })),
    )?;
    es.index_docs(&index, &simple_docs("e", 50))?;
    let scratch = Scratch::new()?;
    scratch.write_config(&es.config(&format!("indices = {index:?}, batch-size = 10")))?;
    let (snapshot, result) = backup(&scratch, &es)?;
    let new = restored_name(&alias, &result, &snapshot);

    // Three documents of the first batch get 429 and no retry is allowed:
    // the run fails with the other seven loaded.
    faults.reject_bulk_items(3);
    let error = fails(&scratch, &es, &["restore", "es", "--set", "retries=0"])?;
    anyhow::ensure!(error.contains("still failing after 0 retries"), "{error}");
    let partial = es.count(&new)?;
    anyhow::ensure!(
        partial > 0 && partial < 50,
        "expected a partial load, found {partial}"
    );
    anyhow::ensure!(
        es.alias_holders(&alias)? == [index.clone()],
        "alias moved by a failed run"
    );

    let restored = restore(&scratch, &es, &[])?;
    anyhow::ensure!(restored["indices"][0]["created"] == false, "{restored}");
    anyhow::ensure!(
        es.count(&new)? == 50,
        "duplicates or losses: {}",
        es.count(&new)?
    );
    anyhow::ensure!(es.documents(&alias)? == es.documents(&index)?);
    Ok(())
}

#[test]
fn throttling_storms_on_search_and_bulk_are_retried_to_the_end() -> anyhow::Result<()> {
    let es = double("storm", Options::es7())?;
    let faults = es.faults()?;
    let (index, alias) = (es.name("metrics_v1"), es.name("metrics"));
    es.ok(
        "PUT",
        &format!("/{index}"),
        Some(&json!({ "aliases": { alias.clone(): {} } })),
    )?;
    es.index_docs(&index, &simple_docs("m", 200))?;
    let scratch = Scratch::new()?;
    scratch.write_config(&es.config(&format!("indices = {index:?}, batch-size = 40")))?;

    faults.reject_search(2);
    faults.fail_requests("POST", "/_search/scroll", 503, 1);
    let (_, result) = backup(&scratch, &es)?;
    anyhow::ensure!(result["documents"] == 200, "{result}");

    // Whole requests rejected three times, then 25 documents one by one.
    faults.reject_bulk(3);
    faults.reject_bulk_items(25);
    faults.fail_requests("POST", &format!("/{alias}-"), 502, 1);
    let restored = restore(&scratch, &es, &[])?;
    anyhow::ensure!(restored["documents"] == 200, "{restored}");
    anyhow::ensure!(
        es.documents(&alias)? == es.documents(&index)?,
        "documents differ"
    );
    Ok(())
}

#[test]
fn a_scroll_that_expires_midway_fails_the_backup_clears_scrolls_and_commits_nothing()
-> anyhow::Result<()> {
    let es = double("scroll", Options::es7())?;
    let faults = es.faults()?;
    let index = es.name("logs");
    es.index_docs(&index, &simple_docs("l", 100))?;
    let scratch = Scratch::new()?;
    // One slice, so that pages come in a known order.
    scratch
        .write_config(&es.config(&format!("indices = {index:?}, batch-size = 10, slices = 1")))?;

    faults.expire_scrolls_after(2);
    let error = fails(&scratch, &es, &["backup", "es"])?;
    anyhow::ensure!(
        error.contains(&format!("scroll over index `{index}`"))
            && error.contains("expired after 30 of 100 documents")
            && error.contains("search_context_missing_exception"),
        "{error}"
    );
    anyhow::ensure!(es.open_scrolls() == 0);
    anyhow::ensure!(
        snapshot_count(&scratch, &es)? == 0,
        "a failed backup was committed"
    );

    // Another failure midway: the scroll must be cleared by the module.
    faults.fail_requests("POST", "/_search/scroll", 400, 1);
    let error = fails(&scratch, &es, &["backup", "es"])?;
    anyhow::ensure!(error.contains("after 10 documents"), "{error}");
    anyhow::ensure!(
        es.open_scrolls() == 0,
        "the failed backup left {} scrolls open",
        es.open_scrolls()
    );
    anyhow::ensure!(
        snapshot_count(&scratch, &es)? == 0,
        "a failed backup was committed"
    );
    Ok(())
}

#[test]
fn an_index_pattern_matching_nothing_fails_before_anything_is_written() -> anyhow::Result<()> {
    let es = cluster("pattern")?;
    let index = es.name("present");
    es.index_docs(&index, &simple_docs("x", 3))?;
    let scratch = Scratch::new()?;
    let pattern = es.name("absent-*");
    scratch.write_config(&es.config(&format!("indices = [{index:?}, {pattern:?}]")))?;
    let error = fails(&scratch, &es, &["backup", "es"])?;
    anyhow::ensure!(
        error.contains(&format!(
            "index pattern `{pattern}` matches no index on {}",
            es.url
        )),
        "{error}"
    );
    let missing = es.name("missing");
    scratch.write_config(&es.config(&format!("indices = {missing:?}")))?;
    let error = fails(&scratch, &es, &["backup", "es"])?;
    anyhow::ensure!(
        error.contains(&format!("index pattern `{missing}` matches no index")),
        "{error}"
    );
    anyhow::ensure!(snapshot_count(&scratch, &es)? == 0);
    Ok(())
}

#[test]
fn wrong_credentials_are_refused_with_the_401_message() -> anyhow::Result<()> {
    let es = double(
        "auth",
        Options {
            username: Some("backup".into()),
            password: Some("right password".into()),
            ..Options::es7()
        },
    )?;
    es.server
        .as_ref()
        .context("server")?
        .seed(&es.name("docs"), 20);
    let scratch = Scratch::new()?;
    scratch.write_config(&es.config(&format!(
        "indices = {:?}, username = \"backup\", password-secret = \"ES_PASSWORD\"",
        es.name("docs")
    )))?;
    let env = |password: &str| {
        vec![
            (PASSWORD_ENV, PASSWORD.to_owned()),
            ("ES_PASSWORD", password.to_owned()),
        ]
    };
    let run = |password: &str, args: &[&str]| {
        let env = env(password);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        cairn_with_env(args, scratch.dir.path(), &env)
    };
    let out = run("wrong password", &["--json", "backup", "es"])?;
    anyhow::ensure!(out.code != Some(0), "{out}");
    let error = out.json()?["run"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        error.contains(&format!(
            "Elasticsearch at {} refused the credentials (401 security_exception): unable to authenticate user [backup]",
            es.url
        )),
        "{error}"
    );
    anyhow::ensure!(
        !error.contains("wrong password"),
        "the password leaked: {error}"
    );
    let out = run("right password", &["--json", "backup", "es"])?;
    out.expect_code(0)?;
    anyhow::ensure!(result_of(&out.json()?)?["documents"] == 20, "{out}");
    Ok(())
}

#[test]
fn an_unreachable_cluster_is_named_in_the_error() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    // Port 1 on loopback: nothing listens there.
    let url = "http://127.0.0.1:1";
    scratch.write_config(&format!(
        "[repository]\npath = \"repo\"\npassword-env = \"{PASSWORD_ENV}\"\n\n\
         [jobs.es]\ntask = \"builtin:elasticsearch-dump\"\nparams = {{ url = {url:?} }}\n\n\
         [jobs.es.allow]\nhttp = [\"http://127.0.0.1:1\"]\n"
    ))?;
    let out = cairn_with_env(
        &["--json", "backup", "es"],
        scratch.dir.path(),
        &[(PASSWORD_ENV, PASSWORD)],
    )?;
    anyhow::ensure!(out.code != Some(0), "{out}");
    let error = out.json()?["run"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        error.contains("cannot reach Elasticsearch at http://127.0.0.1:1"),
        "{error}"
    );
    Ok(())
}

#[test]
fn a_mapping_conflict_on_restore_fails_with_the_reasons() -> anyhow::Result<()> {
    let es = cluster("mapping")?;
    let (index, alias) = (es.name("people_v1"), es.name("people"));
    es.ok(
        "PUT",
        &format!("/{index}"),
        Some(&json!({ "aliases": { alias.clone(): {} } })),
    )?;
    es.index_docs(&index, &simple_docs("p", 12))?;
    let scratch = Scratch::new()?;
    scratch.write_config(&es.config(&format!("indices = {index:?}")))?;
    let (snapshot, result) = backup(&scratch, &es)?;

    // An index left in the way with other mappings (as an index template
    // of the target cluster would impose): `title` is a number there.
    let new = restored_name(&alias, &result, &snapshot);
    es.ok(
        "PUT",
        &format!("/{new}"),
        Some(&json!({ "mappings": { "properties": { "title": { "type": "long" } } } })),
    )?;
    let error = fails(&scratch, &es, &["restore", "es"])?;
    anyhow::ensure!(
        error.contains(&format!(
            "rejected 12 document(s) of `{index}` loading index `{new}`"
        )) && error.contains("mapper_parsing_exception")
            && error.contains("do not fit the index's mappings"),
        "{error}"
    );
    anyhow::ensure!(es.alias_holders(&alias)? == [index], "the alias moved");
    Ok(())
}

#[test]
fn keep_indices_deletes_older_generations_behind_the_alias() -> anyhow::Result<()> {
    let es = cluster("keep")?;
    let (source, alias) = (es.name("stock_src"), es.name("stock"));
    // Matches `stock-*` but not the naming scheme: never touched.
    let bystander = es.name("stock-archive");
    es.index_docs(&source, &simple_docs("s", 5))?;
    es.index_docs(&bystander, &simple_docs("b", 2))?;
    let scratch = Scratch::new()?;
    scratch.write_config(&es.config(&format!(
        "indices = {source:?}, target = {{ {source:?} = {alias:?} }}, keep-indices = 2"
    )))?;

    let mut generations = Vec::new();
    for round in 0..3 {
        let (snapshot, result) = backup(&scratch, &es)?;
        let restored = restore(&scratch, &es, &["--snapshot", &snapshot])?;
        let new = restored_name(&alias, &result, &snapshot);
        generations.push(new.clone());
        anyhow::ensure!(es.alias_holders(&alias)? == [new.clone()], "round {round}");
        let deleted = if round == 2 {
            json!([generations[0]])
        } else {
            json!([])
        };
        anyhow::ensure!(restored["deleted"] == deleted, "round {round}: {restored}");
    }
    anyhow::ensure!(
        !es.index_exists(&generations[0])?,
        "the oldest generation was kept"
    );
    anyhow::ensure!(es.index_exists(&generations[1])? && es.index_exists(&generations[2])?);
    anyhow::ensure!(es.count(&generations[1])? == 5, "a kept generation changed");
    anyhow::ensure!(es.count(&source)? == 5 && es.count(&bystander)? == 2);
    Ok(())
}

/// A test double of its own (a version, security or TLS mode, or faults a
/// real cluster cannot be made to produce): also when `CAIRN_ES_URL` names a
/// real cluster, these tests run against the double.
fn double(test: &str, options: Options) -> anyhow::Result<Cluster> {
    Cluster::start_double("e2e", test, options)
}

/// Index `n` documents, back up `index`, restore it behind `alias`, and
/// compare: the round trip every TLS and credentials test makes.
fn round_trip(es: &Cluster, scratch: &Scratch, index: &str, n: usize) -> anyhow::Result<()> {
    es.index_docs(index, &simple_docs("t", n))?;
    let (snapshot, result) = backup(scratch, es)?;
    anyhow::ensure!(result["documents"] == n, "{result}");
    let restored = restore(scratch, es, &["--set", "replace-index=true"])?;
    anyhow::ensure!(restored["documents"] == n, "{restored}");
    let new = restored_name(index, &result, &snapshot);
    anyhow::ensure!(es.documents(&new)? == es.documents(index)?);
    Ok(())
}

#[test]
fn https_with_the_ca_file_and_basic_auth_on_elasticsearch_8() -> anyhow::Result<()> {
    let es = double("tls-ca", Options::es8())?;
    anyhow::ensure!(es.url.starts_with("https://"), "{}", es.url);
    let index = es.name("secure");
    let scratch = Scratch::new()?;
    scratch.write_config(&es.config(&format!("indices = {index:?}")))?;
    round_trip(&es, &scratch, &index, 40)
}

#[test]
fn https_with_the_ca_fingerprint_and_an_api_key() -> anyhow::Result<()> {
    let key = cairn_es_test_server::ApiKey {
        id: "cairn-e2e-key".into(),
        key: "Zm9yIHRoZSB0ZXN0cyBvbmx5".into(),
        role: cairn_es_test_server::Role::superuser(),
    };
    let mut es = double(
        "tls-fingerprint",
        Options {
            api_keys: vec![key.clone()],
            ..Options::es8()
        },
    )?;
    let fingerprint = es
        .server
        .as_ref()
        .and_then(|s| s.ca_fingerprint())
        .context("fingerprint")?;
    es.tls = Some(Tls {
        ca_fingerprint: Some(fingerprint.to_owned()),
        ..Tls::default()
    });
    let index = es.name("pinned");
    es.index_docs(&index, &simple_docs("k", 15))?;
    let scratch = Scratch::new()?;
    let config = es
        .config(&format!("indices = {index:?}, api-key-secret = \"ES_API_KEY\""))
        .replace(
            "[jobs.es.allow]\n",
            &format!(
                "[jobs.es.allow]\nsecrets.ES_API_KEY = {{ header = \"Authorization\", origins = [{:?}] }}\n",
                es.origin()
            ),
        );
    scratch.write_config(&config)?;
    let out = cairn_with_env(
        &["--json", "backup", "es"],
        scratch.dir.path(),
        &[(PASSWORD_ENV, PASSWORD), ("ES_API_KEY", &key.encoded())],
    )?;
    out.expect_code(0)?;
    anyhow::ensure!(result_of(&out.json()?)?["documents"] == 15, "{out}");
    anyhow::ensure!(!out.stdout.contains(&key.encoded()), "the API key leaked");
    Ok(())
}

#[test]
fn mutual_tls_with_a_client_certificate() -> anyhow::Result<()> {
    let mut es = double(
        "mtls",
        Options {
            tls: Some(cairn_es_test_server::TlsOptions {
                client_auth: cairn_es_test_server::ClientAuth::Required,
            }),
            ..Options::es7()
        },
    )?;
    let server = es.server.as_ref().context("server")?;
    let (cert, key) = server.client_cert().context("client certificate")?;
    let (cert, key) = (cert.to_path_buf(), key.to_path_buf());
    let tls = es.tls.as_mut().context("tls")?;
    tls.client_cert = Some((cert, key));
    es.rebuild_client()?;
    let index = es.name("mutual");
    let scratch = Scratch::new()?;
    scratch.write_config(&es.config(&format!("indices = {index:?}")))?;
    round_trip(&es, &scratch, &index, 12)
}

#[test]
fn insecure_tls_works_and_is_said() -> anyhow::Result<()> {
    let mut es = double("tls-insecure", Options::es8())?;
    let index = es.name("anything-goes");
    es.index_docs(&index, &simple_docs("i", 5))?;
    es.tls = Some(Tls {
        insecure: true,
        ..Tls::default()
    });
    let scratch = Scratch::new()?;
    scratch.write_config(&es.config(&format!("indices = {index:?}")))?;
    let (_, result) = backup(&scratch, &es)?;
    anyhow::ensure!(result["documents"] == 5, "{result}");
    Ok(())
}

#[test]
fn https_without_trusting_the_ca_is_refused() -> anyhow::Result<()> {
    let mut es = double("tls-untrusted", Options::es8())?;
    let index = es.name("x");
    es.index_docs(&index, &simple_docs("u", 2))?;
    let tls = es.tls.take();
    let scratch = Scratch::new()?;
    scratch.write_config(&es.config(&format!("indices = {index:?}")))?;
    es.tls = tls;
    let error = fails(&scratch, &es, &["backup", "es"])?;
    anyhow::ensure!(
        error.contains("cannot reach Elasticsearch")
            || error.to_lowercase().contains("certificate"),
        "{error}"
    );
    Ok(())
}

#[test]
fn a_bearer_token_authenticates() -> anyhow::Result<()> {
    let es = double(
        "bearer",
        Options {
            tokens: vec![cairn_es_test_server::Token {
                token: "e2e-bearer-token-value".into(),
                principal: "cairn".into(),
                role: cairn_es_test_server::Role::superuser(),
            }],
            ..Options::es7()
        },
    )?;
    let index = es.name("tokened");
    es.server.as_ref().context("server")?.seed(&index, 9);
    let scratch = Scratch::new()?;
    let config = es
        .config(&format!("indices = {index:?}, bearer-secret = \"ES_TOKEN\""))
        .replace(
            "[jobs.es.allow]\n",
            &format!(
                "[jobs.es.allow]\nsecrets.ES_TOKEN = {{ header = \"Authorization\", origins = [{:?}] }}\n",
                es.origin()
            ),
        );
    scratch.write_config(&config)?;
    let out = cairn_with_env(
        &["--json", "backup", "es"],
        scratch.dir.path(),
        &[
            (PASSWORD_ENV, PASSWORD),
            ("ES_TOKEN", "e2e-bearer-token-value"),
        ],
    )?;
    out.expect_code(0)?;
    anyhow::ensure!(result_of(&out.json()?)?["documents"] == 9, "{out}");
    Ok(())
}

/// The least privilege of a dump: `read` and `view_index_metadata` on the
/// indices, nothing on the cluster (so `GET /` and `_cat/indices` are
/// forbidden); of a restore: writing and managing the new indices.
#[test]
fn a_least_privilege_user_dumps_and_restores_with_the_version_configured() -> anyhow::Result<()> {
    // Every name this test's double gets starts so (its prefix).
    let pattern = "cairn-e2e-least-privilege-*";
    let user = |name: &str, privileges: &[&str]| cairn_es_test_server::User {
        name: name.into(),
        password: format!("{name}-password"),
        role: cairn_es_test_server::Role::new(&[], &[(pattern, privileges)]),
    };
    let es = Cluster::start_double(
        "e2e",
        "least-privilege",
        Options {
            username: Some("elastic".into()),
            password: Some("admin-password".into()),
            users: vec![
                user("dumper", &["read", "view_index_metadata"]),
                user(
                    "loader",
                    &[
                        "create_index",
                        "write",
                        "manage",
                        "view_index_metadata",
                        "read",
                    ],
                ),
            ],
            ..Options::es7()
        },
    )?;
    let (index, alias) = (es.name("orders_v1"), es.name("orders"));
    es.ok(
        "PUT",
        &format!("/{index}"),
        Some(&json!({ "aliases": { alias.clone(): {} } })),
    )?;
    es.index_docs(&index, &simple_docs("o", 30))?;
    let scratch = Scratch::new()?;
    let write = |extra: &str| {
        scratch.write_config(&format!(
            "[repository]\npath = \"repo\"\npassword-env = \"{PASSWORD_ENV}\"\n\n[state]\npath = \"state.db\"\n\n\
             [jobs.es]\ntask = \"builtin:elasticsearch-dump\"\n\
             params = {{ url = {:?}, indices = {index:?}, username = \"dumper\", password-secret = \"ES_PASSWORD\"{extra} }}\n\n\
             [jobs.es.allow]\nhttp = [{:?}]\nsecrets.ES_PASSWORD = {{ header = \"Authorization\", origins = [{:?}] }}\n",
            es.url,
            es.origin(),
            es.origin()
        ))
    };
    let run = |args: &[&str], password: &str| {
        cairn_with_env(
            args,
            scratch.dir.path(),
            &[(PASSWORD_ENV, PASSWORD), ("ES_PASSWORD", password)],
        )
    };
    write("")?;
    let out = run(&["--json", "backup", "es"], "dumper-password")?;
    anyhow::ensure!(out.code != Some(0), "{out}");
    let error = out.json()?["run"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        error.contains("403") && error.contains("monitor") && error.contains("`version`"),
        "{error}"
    );
    write(", version = \"7.17\"")?;
    let out = run(&["--json", "backup", "es"], "dumper-password")?;
    out.expect_code(0)?;
    let result = result_of(&out.json()?)?;
    anyhow::ensure!(result["documents"] == 30, "{result}");
    let snapshot = out.json()?["run"]["snapshot_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // The restore as `loader`.
    let out = run(
        &["--json", "restore", "es", "--set", "username=loader"],
        "loader-password",
    )?;
    out.expect_code(0)?;
    let new = restored_name(&alias, &result, &snapshot);
    anyhow::ensure!(es.alias_holders(&alias)? == std::slice::from_ref(&new));
    anyhow::ensure!(es.count(&new)? == 30);
    Ok(())
}

#[test]
fn settings_of_the_source_cluster_are_not_restored_on_opensearch() -> anyhow::Result<()> {
    // The source: a 7.17 cluster whose index has an ILM policy, a data tier
    // preference, a node filter and an archived setting.
    let source = double("portable-source", Options::default())?;
    let target = double("portable-target", Options::opensearch2())?;
    let index = source.name("catalog");
    source.ok(
        "PUT",
        &format!("/{index}"),
        Some(&json!({ "settings": {
            "number_of_shards": 2, "number_of_replicas": 0,
            "index.lifecycle.name": "hot-warm", "index.lifecycle.rollover_alias": "catalog-write",
            "index.routing.allocation.include._tier_preference": "data_hot,data_content",
            "index.routing.allocation.require._name": "cairn-test-node",
            "archived.index.mapper.dynamic": "false",
            "analysis": { "analyzer": { "folded": { "type": "custom", "tokenizer": "standard", "filter": ["lowercase", "asciifolding"] } } }
        }, "mappings": { "properties": { "title": { "type": "text", "analyzer": "folded" } } } })),
    )?;
    source.index_docs(&index, &simple_docs("c", 25))?;
    let scratch = Scratch::new()?;
    let config = |keep: &str| {
        format!(
            "[repository]\npath = \"repo\"\npassword-env = \"{PASSWORD_ENV}\"\n\n[state]\npath = \"state.db\"\n\n\
             [jobs.es]\ntask = \"builtin:elasticsearch-dump\"\n\
             params = {{ url = {:?}, indices = {index:?}, retries = 0{keep} }}\n\n\
             [jobs.es.allow]\nhttp = [{:?}, {:?}]\n",
            source.url,
            source.origin(),
            target.origin()
        )
    };
    scratch.write_config(&config(""))?;
    let (snapshot, result) = backup(&scratch, &source)?;
    anyhow::ensure!(result["documents"] == 25, "{result}");

    // Copied as they were, they fail on OpenSearch: no ILM there (an
    // unknown setting), and no node has a data tier (the index stays red).
    scratch.write_config(&config(
        ", keep-settings = [\"index.routing.allocation.*\"]",
    ))?;
    let error = fails(
        &scratch,
        &target,
        &["restore", "es", "--set", &format!("url={}", target.url)],
    )?;
    anyhow::ensure!(error.contains("unavailable_shards_exception"), "{error}");
    // (A re-run would load into the index that run made: remove it.)
    let new = restored_name(&index, &result, &snapshot);
    target.ok("DELETE", &format!("/{new}"), None)?;

    scratch.write_config(&config(""))?;
    let restored = restore(
        &scratch,
        &target,
        &["--set", &format!("url={}", target.url)],
    )?;
    anyhow::ensure!(restored["documents"] == 25, "{restored}");
    let left_out = &restored["indices"][0]["settings-left-out"];
    for key in [
        "index.lifecycle.name",
        "index.lifecycle.rollover_alias",
        "index.routing.allocation.include._tier_preference",
        "index.routing.allocation.require._name",
    ] {
        anyhow::ensure!(
            left_out.as_array().is_some_and(|l| l.contains(&json!(key))),
            "{key}: {restored}"
        );
    }
    let settings =
        &target.ok("GET", &format!("/{new}/_settings?flat_settings=true"), None)?[&new]["settings"];
    anyhow::ensure!(settings["index.number_of_shards"] == "2", "{settings}");
    anyhow::ensure!(
        settings["index.analysis.analyzer.folded.tokenizer"] == "standard",
        "{settings}"
    );
    anyhow::ensure!(settings.get("index.lifecycle.name").is_none(), "{settings}");
    anyhow::ensure!(target.count(&new)? == 25);
    Ok(())
}

#[test]
fn closed_and_hidden_indices_are_an_explicit_choice() -> anyhow::Result<()> {
    let es = double("closed-hidden", Options::es7())?;
    let (open, closed, hidden) = (es.name("open"), es.name("closed"), es.name("hidden"));
    es.index_docs(&open, &simple_docs("o", 4))?;
    es.index_docs(&closed, &simple_docs("c", 3))?;
    es.ok(
        "PUT",
        &format!("/{hidden}"),
        Some(&json!({ "settings": { "index.hidden": true } })),
    )?;
    es.index_docs(&hidden, &simple_docs("h", 2))?;
    es.ok("POST", &format!("/{closed}/_close"), None)?;
    let scratch = Scratch::new()?;
    let pattern = format!("{}-*", es.prefix);
    scratch.write_config(&es.config(&format!("indices = {pattern:?}")))?;
    let error = fails(&scratch, &es, &["backup", "es"])?;
    anyhow::ensure!(
        error.contains(&format!(
            "closed indices on {} cannot be read: {closed}",
            es.url
        )) && error.contains("closed-indices = \"skip\""),
        "{error}"
    );
    anyhow::ensure!(snapshot_count(&scratch, &es)? == 0);

    scratch
        .write_config(&es.config(&format!("indices = {pattern:?}, closed-indices = \"skip\"")))?;
    let (_, result) = backup(&scratch, &es)?;
    anyhow::ensure!(result["indices"] == json!({ open.clone(): 4 }), "{result}");

    scratch.write_config(&es.config(&format!(
        "indices = {pattern:?}, closed-indices = \"skip\", hidden-indices = \"include\""
    )))?;
    let (_, result) = backup(&scratch, &es)?;
    anyhow::ensure!(
        result["indices"] == json!({ open.clone(): 4, hidden.clone(): 2 }),
        "{result}"
    );
    // Named outright, a hidden index is dumped.
    scratch.write_config(&es.config(&format!("indices = {hidden:?}")))?;
    let (_, result) = backup(&scratch, &es)?;
    anyhow::ensure!(result["documents"] == 2, "{result}");
    Ok(())
}

#[test]
fn data_streams_templates_and_ilm_policies_round_trip_to_elasticsearch_8() -> anyhow::Result<()> {
    let source = double("streams-source", Options::es7())?;
    let target = double(
        "streams-target",
        Options {
            flavor: cairn_es_test_server::Flavor::Elasticsearch8,
            ..Options::es7()
        },
    )?;
    let p = source.prefix.clone();
    let (policy, component, template, stream, index) = (
        format!("{p}-policy"),
        format!("{p}-mappings"),
        format!("{p}-logs"),
        format!("{p}-logs-app"),
        format!("{p}-plain"),
    );
    source.ok(
        "PUT",
        &format!("/_ilm/policy/{policy}"),
        Some(&json!({ "policy": { "phases": { "hot": { "actions": {} } } } })),
    )?;
    source.ok(
        "PUT",
        &format!("/_component_template/{component}"),
        Some(&json!({ "template": { "mappings": { "properties": { "message": { "type": "text" } } } } })),
    )?;
    source.ok(
        "PUT",
        &format!("/_index_template/{template}"),
        Some(&json!({ "index_patterns": [format!("{p}-logs-*")], "data_stream": {}, "priority": 300,
                      "composed_of": [component], "template": { "settings": { "index.lifecycle.name": policy } } })),
    )?;
    let mut body = String::new();
    for i in 0..30 {
        body.push_str(&format!(
            "{}\n{}\n",
            json!({ "create": { "_index": stream, "_id": format!("e{i}") } }),
            json!({ "@timestamp": "2026-01-01T00:00:00Z", "message": format!("event {i}") })
        ));
        if i == 14 {
            source.ok(
                "POST",
                "/_bulk?refresh=true",
                Some(&Value::String(std::mem::take(&mut body))),
            )?;
            source.ok("POST", &format!("/{stream}/_rollover"), None)?;
        }
    }
    source.ok("POST", "/_bulk?refresh=true", Some(&Value::String(body)))?;
    source.ok(
        "PUT",
        &format!("/{index}"),
        Some(&json!({ "settings": { "index.lifecycle.name": policy } })),
    )?;
    source.index_docs(&index, &simple_docs("x", 7))?;

    let scratch = Scratch::new()?;
    scratch.write_config(&format!(
        "[repository]\npath = \"repo\"\npassword-env = \"{PASSWORD_ENV}\"\n\n[state]\npath = \"state.db\"\n\n\
         [jobs.es]\ntask = \"builtin:elasticsearch-dump\"\n\
         params = {{ url = {:?}, indices = [{stream:?}, {index:?}], templates = true, ilm-policies = true }}\n\n\
         [jobs.es.allow]\nhttp = [{:?}, {:?}]\n",
        source.url,
        source.origin(),
        target.origin()
    ))?;
    let (snapshot, result) = backup(&scratch, &source)?;
    anyhow::ensure!(result["documents"] == 37, "{result}");
    anyhow::ensure!(result["data-streams"] == json!([stream]), "{result}");
    anyhow::ensure!(result["ilm-policies"] == json!([policy]), "{result}");

    let restored = restore(
        &scratch,
        &target,
        &["--set", &format!("url={}", target.url)],
    )?;
    anyhow::ensure!(restored["documents"] == 37, "{restored}");
    anyhow::ensure!(
        restored["ilm-policies-created"] == json!([policy]),
        "{restored}"
    );
    anyhow::ensure!(
        restored["templates-created"] == json!([component, template]),
        "{restored}"
    );
    let ds = target.ok("GET", &format!("/_data_stream/{stream}"), None)?;
    anyhow::ensure!(
        ds["data_streams"][0]["template"] == template.as_str(),
        "{ds}"
    );
    anyhow::ensure!(target.count(&stream)? == 30);
    let sources = |c: &Cluster| c.documents(&stream);
    anyhow::ensure!(
        sources(&target)? == sources(&source)?,
        "data stream documents differ"
    );
    let new = restored_name(&index, &result, &snapshot);
    let settings =
        &target.ok("GET", &format!("/{new}/_settings?flat_settings=true"), None)?[&new]["settings"];
    anyhow::ensure!(
        settings["index.lifecycle.name"] == policy.as_str(),
        "{settings}"
    );
    // A second restore of the data stream is additive: same documents.
    restore(
        &scratch,
        &target,
        &["--set", &format!("url={}", target.url)],
    )?;
    anyhow::ensure!(target.count(&stream)? == 30);
    Ok(())
}

#[test]
fn partial_shard_failures_and_timeouts_fail_the_backup() -> anyhow::Result<()> {
    let es = double("partial", Options::es7())?;
    let faults = es.faults()?;
    let index = es.name("events");
    es.index_docs(&index, &simple_docs("e", 60))?;
    let scratch = Scratch::new()?;
    scratch
        .write_config(&es.config(&format!("indices = {index:?}, batch-size = 10, slices = 1")))?;
    faults.shard_failures(1);
    let error = fails(&scratch, &es, &["backup", "es"])?;
    anyhow::ensure!(
        error.contains("failed on some shards") && error.contains("node_disconnected_exception"),
        "{error}"
    );
    faults.clear();
    faults.search_timeouts(1);
    let error = fails(&scratch, &es, &["backup", "es"])?;
    anyhow::ensure!(
        error.contains("timed out") && error.contains("`timed_out`"),
        "{error}"
    );
    anyhow::ensure!(
        snapshot_count(&scratch, &es)? == 0,
        "a partial dump was committed"
    );
    anyhow::ensure!(es.open_scrolls() == 0);
    Ok(())
}

#[test]
fn sliced_scrolls_read_every_document_once() -> anyhow::Result<()> {
    let es = cluster("slices")?;
    let index = es.name("big");
    es.index_docs(&index, &simple_docs("s", 500))?;
    let scratch = Scratch::new()?;
    scratch
        .write_config(&es.config(&format!("indices = {index:?}, batch-size = 37, slices = 4")))?;
    let (snapshot, result) = backup(&scratch, &es)?;
    anyhow::ensure!(result["documents"] == 500, "{result}");
    anyhow::ensure!(es.open_scrolls() == 0);
    restore(
        &scratch,
        &es,
        &["--set", "replace-index=true", "--set", "bulk-concurrency=4"],
    )?;
    let new = restored_name(&index, &result, &snapshot);
    anyhow::ensure!(es.documents(&new)? == es.documents(&index)?);
    Ok(())
}

#[test]
fn lost_acknowledged_writes_fail_the_restore_count_check() -> anyhow::Result<()> {
    let es = double("lost-writes", Options::es7())?;
    let faults = es.faults()?;
    let (index, alias) = (es.name("ledger_v1"), es.name("ledger"));
    es.ok(
        "PUT",
        &format!("/{index}"),
        Some(&json!({ "aliases": { alias.clone(): {} } })),
    )?;
    es.index_docs(&index, &simple_docs("l", 30))?;
    let scratch = Scratch::new()?;
    scratch.write_config(&es.config(&format!("indices = {index:?}")))?;
    let (snapshot, result) = backup(&scratch, &es)?;
    faults.drop_acknowledged_writes(3);
    let error = fails(&scratch, &es, &["restore", "es"])?;
    let new = restored_name(&alias, &result, &snapshot);
    anyhow::ensure!(
        error.contains(&format!("`{new}` holds 27 documents after the load"))
            && error.contains("aliases were not moved"),
        "{error}"
    );
    anyhow::ensure!(es.alias_holders(&alias)? == [index], "the alias moved");
    Ok(())
}
