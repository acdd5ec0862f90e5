//! End-to-end tests of `builtin:elasticsearch-snapshot` and the `forget`
//! hook: the real `cairn` binary taking Elasticsearch snapshots, restoring
//! them into renamed indices, and deleting them when `cairn forget` drops
//! the Cairn snapshots that record them.
//!
//! They run against the Elasticsearch test server (`cairn-es-test-server`,
//! a faithful double of the REST subset used, which writes real files under
//! its `path.repo`) or, when `CAIRN_ES_URL` is set, a real cluster (CA and
//! credentials variables in `es_cluster.rs`; the cluster needs `path.repo`
//! set, since the tests register `fs` repositories at relative locations).
//! The archive test also needs `CAIRN_ES_PATH_REPO`, the cluster's
//! `path.repo` as seen from this host. Tests that inject faults or need a
//! server of their own skip on a real cluster, saying so. Every test uses
//! its own index, repository and location names.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use cairn_es_test_server::Options;
use serde_json::{Value, json};

use crate::es_cluster::{Cluster, real_cluster, real_path_repo};
use crate::support::{CliOutput, Scratch, cairn_with_env};

/// The repository password of every test.
const PASSWORD: &str = "correct horse battery staple";
const PASSWORD_ENV: &str = "CAIRN_TEST_PASSWORD";
/// The secret holding the real cluster's `Authorization` header, if any.
const AUTH_SECRET: &str = "CAIRN_TEST_ES_SNAPSHOT_AUTH";

/// A fresh test server (or the real cluster) for `test`: Elasticsearch
/// 7.17, validating settings as a real cluster does.
fn cluster(test: &str) -> anyhow::Result<Cluster> {
    cluster_with(test, Options::es7())
}

fn cluster_with(test: &str, options: Options) -> anyhow::Result<Cluster> {
    Cluster::start("snap", test, options)
}

/// A test double of its own (a version, security mode or fault a real
/// cluster cannot be made to produce), also when `CAIRN_ES_URL` is set.
fn double(test: &str, options: Options) -> anyhow::Result<Cluster> {
    Cluster::start_double("snap", test, options)
}

impl Cluster {
    fn repo(&self) -> String {
        self.name("repo")
    }

    /// Index `n` small documents into `index` (created if missing).
    fn seed(&self, index: &str, n: usize) -> anyhow::Result<()> {
        let mut body = String::new();
        for i in 0..n {
            body.push_str(&format!(
                "{}\n{}\n",
                json!({"index": {"_index": index, "_id": format!("d{i}")}}),
                json!({"title": format!("document {i}"), "n": i, "tags": ["x", "y"]})
            ));
        }
        let response = self.ok("POST", "/_bulk?refresh=true", Some(&Value::String(body)))?;
        anyhow::ensure!(response["errors"] == false, "bulk failed: {response}");
        Ok(())
    }

    /// Every document of `index`: id → source.
    fn sources(&self, index: &str) -> anyhow::Result<BTreeMap<String, Value>> {
        self.ok("POST", &format!("/{index}/_refresh"), None)?;
        let page = self.ok(
            "POST",
            &format!("/{index}/_search"),
            Some(&json!({"size": 10000, "query": {"match_all": {}}})),
        )?;
        let hits = page["hits"]["hits"].as_array().context("hits")?;
        Ok(hits
            .iter()
            .map(|h| {
                (
                    h["_id"].as_str().unwrap_or_default().to_owned(),
                    h["_source"].clone(),
                )
            })
            .collect())
    }

    /// Names of the indices `alias` points at.
    fn alias_targets(&self, alias: &str) -> anyhow::Result<Vec<String>> {
        let (status, body) = self.call("GET", &format!("/_alias/{alias}"), None)?;
        if status == 404 {
            return Ok(Vec::new());
        }
        anyhow::ensure!(
            status == 200,
            "GET /_alias/{alias} returned {status}: {body}"
        );
        Ok(body
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// The state of Elasticsearch snapshot `name` in this test's repository,
    /// or `None` when it does not exist.
    fn snapshot_state(&self, name: &str) -> anyhow::Result<Option<String>> {
        let (status, body) =
            self.call("GET", &format!("/_snapshot/{}/{name}", self.repo()), None)?;
        match status {
            404 => Ok(None),
            200 => Ok(body["snapshots"][0]["state"].as_str().map(str::to_owned)),
            _ => anyhow::bail!("GET snapshot {name} returned {status}: {body}"),
        }
    }

    /// Names of the snapshots in this test's repository.
    fn snapshot_names(&self) -> anyhow::Result<Vec<String>> {
        let body = self.ok("GET", &format!("/_snapshot/{}/_all", self.repo()), None)?;
        Ok(body["snapshots"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["snapshot"].as_str().map(str::to_owned))
            .collect())
    }
}

/// A scratch dir whose config runs `builtin:elasticsearch-snapshot` against
/// `cluster` as job `search`, with `params` added to the job's params and
/// `extra` lines (retention …) and `allow` lines added.
struct Setup {
    scratch: Scratch,
}

/// Credentials for the job: basic auth with a password file, or the real
/// cluster's `Authorization` value.
enum Auth<'a> {
    /// As the cluster needs: none for the test server, the header for a real one.
    Default,
    /// `username` + `password-secret` with this password.
    Basic(&'a str, &'a str),
}

impl Setup {
    fn new(cluster: &Cluster, params: &Value, auth: Auth<'_>, extra: &str) -> anyhow::Result<Self> {
        let scratch = Scratch::new()?;
        let mut all = json!({
            "url": cluster.url,
            "repository": cluster.repo(),
            "location": cluster.name("location"),
            "indices": [format!("{}-*", cluster.prefix)],
            "rename-replacement": "$1-restored",
            "poll-interval": 0.05,
        });
        for (k, v) in params.as_object().context("params is an object")? {
            if v.is_null() {
                all.as_object_mut().unwrap().remove(k);
            } else {
                all[k] = v.clone();
            }
        }
        let mut secrets = String::new();
        let mut granted = Vec::new();
        match (auth, &cluster.auth) {
            (Auth::Basic(user, password), _) => {
                std::fs::write(scratch.path("es-password"), password)?;
                secrets.push_str(&format!(
                    "[secrets.ES_PASSWORD]\nfile = {:?}\n\n",
                    scratch.path("es-password").display().to_string()
                ));
                all["username"] = json!(user);
                all["password-secret"] = json!("ES_PASSWORD");
                granted.push("ES_PASSWORD");
            }
            (Auth::Default, Some(header)) => {
                std::fs::write(scratch.path("es-auth"), header)?;
                secrets.push_str(&format!(
                    "[secrets.{AUTH_SECRET}]\nfile = {:?}\n\n",
                    scratch.path("es-auth").display().to_string()
                ));
                all["authorization-secret"] = json!(AUTH_SECRET);
                granted.push(AUTH_SECRET);
            }
            (Auth::Default, None) => {}
        }
        let mut allow = format!("http = [{:?}]\n", cluster.origin());
        for name in &granted {
            allow.push_str(&format!(
                "secrets.{name} = {{ header = \"Authorization\", origins = [{:?}] }}\n",
                origin_of_url(&cluster.url)
            ));
        }
        if let Some(path) = all.get("archive-path").and_then(Value::as_str) {
            allow.push_str(&format!("paths = {{ {path:?} = \"read-write\" }}\n"));
        }
        let body = format!(
            "[repository]\npath = \"repo\"\npassword-env = \"{PASSWORD_ENV}\"\n\n\
             [state]\npath = \"state.db\"\n\n{secrets}\
             [jobs.search]\ntask = \"builtin:elasticsearch-snapshot\"\nparams = {}\n{extra}\n\n\
             [jobs.search.allow]\n{allow}{}",
            toml_inline(&all),
            cluster.tls_toml("search")
        );
        scratch.write_config(&body)?;
        Ok(Setup { scratch })
    }

    /// `cairn ARGS` in the scratch dir with the repository password.
    fn cairn(&self, args: &[&str]) -> anyhow::Result<CliOutput> {
        cairn_with_env(args, self.scratch.dir.path(), &[(PASSWORD_ENV, PASSWORD)])
    }

    /// `cairn --json backup search`, which must succeed: the report.
    fn backup(&self) -> anyhow::Result<Value> {
        let out = self.cairn(&["--json", "backup", "search"])?;
        out.expect_code(0)?;
        out.json()
    }

    /// `cairn --json restore search [--set …]`, which must succeed: the task's result.
    fn restore(&self, set: &[&str]) -> anyhow::Result<Value> {
        let out = self.restore_output(set)?;
        out.expect_code(0)?;
        result_of(&out.json()?)
    }

    fn restore_output(&self, set: &[&str]) -> anyhow::Result<CliOutput> {
        let mut args = vec!["--json", "restore", "search"];
        for s in set {
            args.extend(["--set", s]);
        }
        self.cairn(&args)
    }

    /// Ids of the Cairn snapshots of job `search`, oldest first.
    fn cairn_snapshots(&self) -> anyhow::Result<Vec<String>> {
        let out = self.cairn(&["--json", "snapshots", "search"])?;
        out.expect_code(0)?;
        Ok(out
            .json()?
            .as_array()
            .context("snapshots is a list")?
            .iter()
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect())
    }
}

/// `value` (a JSON object of strings, numbers, booleans and lists) as a TOML inline table.
fn toml_inline(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k:?} = {}", toml_inline(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// The task's result in a run report (stored as JSON or as text).
fn result_of(report: &Value) -> anyhow::Result<Value> {
    match &report["result"] {
        Value::String(text) => Ok(serde_json::from_str(text)?),
        Value::Null => anyhow::bail!("no result in {report}"),
        other => Ok(other.clone()),
    }
}

/// The ES snapshot name from a backup report.
fn es_snapshot_of(report: &Value) -> anyhow::Result<String> {
    result_of(report)?["snapshot"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no snapshot name in {report}"))
}

#[test]
fn snapshot_restores_into_renamed_indices_and_moves_aliases() -> anyhow::Result<()> {
    let es = cluster("renamed")?;
    let (logs, users) = (es.name("logs"), es.name("users"));
    es.seed(&logs, 40)?;
    es.seed(&users, 7)?;
    let alias = es.name("current");
    es.ok(
        "POST",
        "/_aliases",
        Some(&json!({"actions": [{"add": {"index": logs, "alias": alias}}]})),
    )?;
    let setup = Setup::new(&es, &json!({}), Auth::Default, "")?;

    let report = setup.backup()?;
    let result = result_of(&report)?;
    let name = es_snapshot_of(&report)?;
    assert!(name.starts_with("cairn-search-"), "{result}");
    assert_eq!(result["state"], "SUCCESS", "{result}");
    let mut indices: Vec<String> = serde_json::from_value(result["indices"].clone())?;
    indices.sort();
    assert_eq!(indices, vec![logs.clone(), users.clone()]);
    assert_eq!(result["shards"]["failed"], 0, "{result}");
    assert_eq!(es.snapshot_state(&name)?.as_deref(), Some("SUCCESS"));

    let restored = setup.restore(&["move-aliases=true"])?;
    assert_eq!(restored["snapshot"], name.as_str(), "{restored}");
    let (logs_copy, users_copy) = (format!("{logs}-restored"), format!("{users}-restored"));
    assert_eq!(es.sources(&logs_copy)?, es.sources(&logs)?);
    assert_eq!(es.sources(&users_copy)?, es.sources(&users)?);
    assert_eq!(es.sources(&logs_copy)?.len(), 40);
    // The alias moved, in one step, from the original to its copy.
    assert_eq!(es.alias_targets(&alias)?, vec![logs_copy.clone()]);
    assert_eq!(
        restored["aliases_moved"],
        json!([{"alias": alias, "from": logs, "to": logs_copy}])
    );
    Ok(())
}

#[test]
fn partial_snapshot_fails_the_run_with_the_shard_reason_and_commits_nothing() -> anyhow::Result<()>
{
    let es = double("partial", Options::es7())?;
    let faults = es.faults()?;
    es.seed(&es.name("logs"), 5)?;
    faults.snapshot_outcome("PARTIAL", "disk quota exceeded on node-7");
    let setup = Setup::new(&es, &json!({}), Auth::Default, "")?;
    let out = setup.cairn(&["--json", "backup", "search"])?;
    anyhow::ensure!(out.code != Some(0), "the backup should fail\n{out}");
    let error = out.json()?["run"]["error"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no error\n{out}"))?;
    assert!(error.contains("PARTIAL"), "{error}");
    assert!(error.contains("disk quota exceeded on node-7"), "{error}");
    assert!(error.contains(&es.name("logs")), "{error}");
    assert!(setup.cairn_snapshots()?.is_empty(), "nothing is committed");
    assert!(
        es.snapshot_names()?.is_empty(),
        "the useless ES snapshot is deleted"
    );
    Ok(())
}

#[test]
fn repository_location_outside_path_repo_is_a_clear_error() -> anyhow::Result<()> {
    let es = cluster("outside")?;
    es.seed(&es.name("logs"), 3)?;
    let setup = Setup::new(
        &es,
        &json!({"location": "/cairn-not-under-path-repo/x"}),
        Auth::Default,
        "",
    )?;
    let out = setup.cairn(&["backup", "search"])?;
    anyhow::ensure!(out.code != Some(0), "the backup should fail\n{out}");
    assert!(out.stderr.contains("path.repo"), "{out}");
    assert!(out.stderr.contains("/cairn-not-under-path-repo/x"), "{out}");

    // Without `location`, a missing repository is named.
    let setup = Setup::new(&es, &json!({"location": null}), Auth::Default, "")?;
    let out = setup.cairn(&["backup", "search"])?;
    anyhow::ensure!(out.code != Some(0), "the backup should fail\n{out}");
    assert!(out.stderr.contains("does not exist"), "{out}");
    assert!(out.stderr.contains(&es.repo()), "{out}");
    Ok(())
}

#[test]
fn forget_deletes_the_elasticsearch_snapshots_of_forgotten_snapshots() -> anyhow::Result<()> {
    let es = cluster("forget")?;
    es.seed(&es.name("logs"), 5)?;
    let setup = Setup::new(
        &es,
        &json!({}),
        Auth::Default,
        "retention = { keep-last = 1 }",
    )?;
    let first = es_snapshot_of(&setup.backup()?)?;
    let second = es_snapshot_of(&setup.backup()?)?;
    assert_ne!(first, second);
    let cairn_snaps = setup.cairn_snapshots()?;
    assert_eq!(cairn_snaps.len(), 2);

    // --dry-run touches nothing.
    setup.cairn(&["forget", "--dry-run"])?.expect_code(0)?;
    assert_eq!(es.snapshot_state(&first)?.as_deref(), Some("SUCCESS"));

    let out = setup.cairn(&["forget"])?;
    out.expect_code(0)?;
    assert_eq!(setup.cairn_snapshots()?, vec![cairn_snaps[1].clone()]);
    assert_eq!(es.snapshot_state(&first)?, None, "forgotten: deleted in ES");
    assert_eq!(es.snapshot_state(&second)?.as_deref(), Some("SUCCESS"));
    // The kept snapshot still restores.
    let restored = setup.restore(&[])?;
    assert_eq!(restored["snapshot"], second.as_str());
    Ok(())
}

#[test]
fn failing_forget_hook_keeps_the_cairn_snapshot_until_it_succeeds() -> anyhow::Result<()> {
    let es = double("forget-fails", Options::es7())?;
    let faults = es.faults()?;
    es.seed(&es.name("logs"), 5)?;
    let setup = Setup::new(
        &es,
        &json!({}),
        Auth::Default,
        "retention = { keep-last = 1 }",
    )?;
    let first = es_snapshot_of(&setup.backup()?)?;
    setup.backup()?;
    faults.fail_requests("DELETE", "/_snapshot", 503, 1);

    let out = setup.cairn(&["forget"])?;
    out.expect_code(1)?;
    assert!(out.stderr.contains("forget hook failed"), "{out}");
    assert!(out.stderr.contains("503"), "{out}");
    assert_eq!(setup.cairn_snapshots()?.len(), 2, "kept for the next time");
    assert_eq!(es.snapshot_state(&first)?.as_deref(), Some("SUCCESS"));

    // The next forget retries and succeeds.
    setup.cairn(&["forget"])?.expect_code(0)?;
    assert_eq!(setup.cairn_snapshots()?.len(), 1);
    assert_eq!(es.snapshot_state(&first)?, None);
    Ok(())
}

#[test]
fn archived_repository_restores_into_a_fresh_cluster() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    // On a real cluster this needs its `path.repo` as seen from here
    // (CAIRN_ES_PATH_REPO); without it, the test runs against the double.
    let (path_repo, real): (PathBuf, bool) = match (real_cluster(), real_path_repo()) {
        (true, Some(dir)) => (dir, true),
        _ => (scratch.path("path-repo"), false),
    };
    std::fs::create_dir_all(&path_repo)?;
    let options = || Options {
        path_repo: Some(path_repo.clone()),
        ..Options::es7()
    };
    let es = if real {
        cluster_with("archive", options())?
    } else {
        double("archive", options())?
    };
    let logs = es.name("logs");
    es.seed(&logs, 25)?;
    let before = es.sources(&logs)?;
    let location = es.name("location");
    let dir = path_repo.join(&location);
    let params = json!({"archive-path": dir.display().to_string()});
    let setup = Setup::new(&es, &params, Auth::Default, "")?;
    let result = result_of(&setup.backup()?)?;
    assert_eq!(result["archived"], true, "{result}");
    assert!(
        std::fs::read_dir(&dir)?.next().is_some(),
        "the snapshot wrote files under path.repo"
    );

    // Lose the cluster (on a real one: the index and the repository's
    // registration) and the repository directory.
    let es = if real {
        es.ok("DELETE", &format!("/{logs}"), None)?;
        es.ok("DELETE", &format!("/_snapshot/{}", es.repo()), None)?;
        es
    } else {
        // A fresh server on the same address (the job's `url`) and `path.repo`.
        let prefix = es.prefix.clone();
        let listen = es.server.as_ref().context("test server")?.addr();
        drop(es);
        let server = cairn_es_test_server::EsServer::start(Options {
            listen,
            ..options()
        });
        Cluster::with_server(server, prefix)?
    };
    std::fs::remove_dir_all(&dir)?;
    assert!(es.call("GET", &format!("/{logs}/_count"), None)?.0 == 404);

    let restored = setup.restore(&[])?;
    assert_eq!(restored["archive_restored"], true, "{restored}");
    assert_eq!(es.sources(&format!("{logs}-restored"))?, before);
    Ok(())
}

#[test]
fn wrong_credentials_fail_clearly_and_right_ones_work() -> anyhow::Result<()> {
    let es = double(
        "auth",
        Options {
            username: Some("elastic".into()),
            password: Some("s3cret-Passw0rd".into()),
            ..Options::es7()
        },
    )?;
    let wrong = Setup::new(
        &es,
        &json!({}),
        Auth::Basic("elastic", "not-the-password"),
        "",
    )?;
    let out = wrong.cairn(&["backup", "search"])?;
    anyhow::ensure!(out.code != Some(0), "the backup should fail\n{out}");
    assert!(out.stderr.contains("401"), "{out}");
    assert!(out.stderr.contains("refused the credentials"), "{out}");

    let right = Setup::new(
        &es,
        &json!({}),
        Auth::Basic("elastic", "s3cret-Passw0rd"),
        "",
    )?;
    // The test's own client authenticates as `elastic` (from the options).
    let client = es;
    client.seed(&client.name("logs"), 4)?;
    let report = right.backup()?;
    let run = report["run"]["id"].as_str().context("run id")?.to_owned();
    let log = right.cairn(&["runs", "show", &run])?;
    log.expect_code(0)?;
    assert!(!log.stdout.contains("s3cret-Passw0rd"), "{log}");
    let encoded = cairn::capabilities::redact::base64(
        b"elastic:s3cret-Passw0rd",
        cairn::capabilities::redact::Alphabet::Standard,
    );
    assert!(!log.stdout.contains(&encoded), "{log}");
    Ok(())
}

#[test]
fn restore_over_an_existing_open_index_needs_delete_existing() -> anyhow::Result<()> {
    let es = cluster("existing")?;
    let logs = es.name("logs");
    es.seed(&logs, 12)?;
    let setup = Setup::new(&es, &json!({}), Auth::Default, "")?;
    setup.backup()?;
    let before = es.sources(&logs)?;
    // Change the live index after the snapshot.
    es.ok(
        "PUT",
        &format!("/{logs}/_doc/late?refresh=true"),
        Some(&json!({"title": "written after the snapshot"})),
    )?;

    let out = setup.restore_output(&["restore-to-originals=true"])?;
    anyhow::ensure!(out.code != Some(0), "the restore should fail\n{out}");
    let error = out.json()?["run"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("delete-existing"), "{out}");
    assert!(error.contains(&logs), "{out}");
    assert_eq!(es.sources(&logs)?.len(), 13, "the index was left alone");

    let restored = setup.restore(&["restore-to-originals=true", "delete-existing=true"])?;
    assert_eq!(restored["deleted"], json!([logs]), "{restored}");
    assert_eq!(es.sources(&logs)?, before);
    Ok(())
}

/// `scheme://host:port` of `url`, as an `allow.http` entry writes it.
fn origin_of_url(url: &str) -> String {
    let parsed = url::Url::parse(url).expect("the cluster URL parses");
    format!(
        "{}://{}:{}",
        parsed.scheme(),
        parsed.host_str().unwrap_or_default(),
        parsed.port_or_known_default().unwrap_or(0)
    )
}

#[test]
fn concurrent_snapshot_refusals_are_retried_with_backoff() -> anyhow::Result<()> {
    let es = double("concurrent", Options::es7())?;
    let faults = es.faults()?;
    es.seed(&es.name("logs"), 5)?;
    faults.concurrent_snapshot_errors(2);
    let setup = Setup::new(&es, &json!({}), Auth::Default, "")?;
    let report = setup.backup()?;
    assert_eq!(result_of(&report)?["state"], "SUCCESS");
    let run = report["run"]["id"].as_str().context("run id")?.to_owned();
    let log = setup.cairn(&["runs", "show", &run])?;
    assert!(
        log.stdout
            .contains("concurrent_snapshot_execution_exception"),
        "{log}"
    );
    assert!(log.stdout.contains("retry 2 of 8"), "{log}");

    // Refused more often than `retries` allows: the run fails, saying so.
    faults.concurrent_snapshot_errors(3);
    let setup = Setup::new(&es, &json!({"retries": 1}), Auth::Default, "")?;
    let out = setup.cairn(&["--json", "backup", "search"])?;
    anyhow::ensure!(out.code != Some(0), "{out}");
    let error = out.json()?["run"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.contains("still refused after 1 retries"), "{error}");
    Ok(())
}

#[test]
fn a_snapshot_that_never_finishes_times_out_and_is_aborted() -> anyhow::Result<()> {
    let es = double(
        "stuck",
        Options {
            snapshot_delay: std::time::Duration::from_secs(3600),
            ..Options::es7()
        },
    )?;
    es.seed(&es.name("logs"), 3)?;
    let setup = Setup::new(&es, &json!({"snapshot-timeout": 1}), Auth::Default, "")?;
    let started = std::time::Instant::now();
    let out = setup.cairn(&["--json", "backup", "search"])?;
    anyhow::ensure!(out.code != Some(0), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    let error = out.json()?["run"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("was still IN_PROGRESS after the snapshot-timeout of 1s"),
        "{error}"
    );
    assert!(
        es.snapshot_names()?.is_empty(),
        "the stuck snapshot was not aborted"
    );
    assert!(setup.cairn_snapshots()?.is_empty());
    Ok(())
}

#[test]
fn snapshot_and_renamed_restore_over_https_on_elasticsearch_8() -> anyhow::Result<()> {
    let es = double("es8", Options::es8())?;
    assert!(es.url.starts_with("https://"));
    let logs = es.name("logs");
    es.seed(&logs, 20)?;
    let setup = Setup::new(&es, &json!({}), Auth::Default, "")?;
    let report = setup.backup()?;
    assert_eq!(result_of(&report)?["state"], "SUCCESS", "{report}");
    let restored = setup.restore(&[])?;
    assert_eq!(restored["indices"][0]["to"], format!("{logs}-restored"));
    assert_eq!(es.sources(&format!("{logs}-restored"))?, es.sources(&logs)?);
    Ok(())
}
