//! The multi-step application examples in `examples/`, run as written with
//! only their machine paths (and database names) swapped for scratch ones:
//! one run, one snapshot holding every step's artifacts, and a restore that
//! puts everything back.

use std::path::Path;

use anyhow::Context as _;
use cairn::runner::{RunOptions, Runner};
use cairn::state::{RunKind, RunStatus};
use serde_json::{Map, Value, json};

use crate::repository::psql;
use crate::support::{Scratch, workspace_root};

/// `examples/NAME/cairn.toml` with each `(from, to)` replaced, loaded into a
/// runner in `scratch`.
fn example_runner(
    scratch: &Scratch,
    name: &str,
    swaps: &[(&str, &Path)],
) -> anyhow::Result<Runner> {
    let path = workspace_root()
        .join("examples")
        .join(name)
        .join("cairn.toml");
    let mut text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    for (from, to) in swaps {
        anyhow::ensure!(
            text.contains(from),
            "{} does not mention {from}",
            path.display()
        );
        text = text.replace(from, &to.display().to_string());
    }
    scratch.runner(&text)
}

fn params(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// Row count and md5 of the rows of `table`, in key order.
fn table_digest(db: &str, table: &str) -> anyhow::Result<String> {
    psql(
        db,
        &format!(
            "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM {table} t"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nuxeo_example_backs_up_database_then_binaries_in_one_snapshot_and_restores_both()
-> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let binaries = scratch.path("binaries");
    let restored = scratch.path("binaries-restored");
    std::fs::create_dir_all(binaries.join("ab/cd"))?;
    std::fs::write(binaries.join("ab/cd/abcd1234"), vec![7u8; 300_000])?;
    std::fs::write(binaries.join("ab/cd/abcd5678"), b"blob two")?;
    std::fs::create_dir_all(&restored)?;
    std::fs::write(scratch.path("password"), "nuxeo-example\n")?;

    let suffix = std::process::id();
    let db = format!("cairn_nuxeo_{suffix}");
    let target = format!("cairn_nuxeo_restored_{suffix}");
    for name in [&db, &target] {
        psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"))?;
    }
    psql("postgres", &format!("CREATE DATABASE {db}"))?;
    psql(
        &db,
        "CREATE TABLE hierarchy (id serial PRIMARY KEY, name text, blob_key text);
         INSERT INTO hierarchy (name, blob_key)
           SELECT 'doc ' || i, CASE WHEN i % 2 = 0 THEN 'abcd1234' ELSE 'abcd5678' END
           FROM generate_series(1, 5000) i;",
    )?;

    let runner = example_runner(
        &scratch,
        "nuxeo",
        &[
            ("/var/backups/cairn", &scratch.path("repo")),
            ("/etc/cairn/repository-password", &scratch.path("password")),
            ("/var/lib/nuxeo/binaries-restored", &restored),
            ("/var/lib/nuxeo/binaries", &binaries),
        ],
    )?;
    let overrides = json!({"database": db, "restore-database": target});
    let report = runner
        .run(
            "nuxeo",
            RunKind::Backup,
            RunOptions {
                overrides: params(overrides.clone()),
                ..RunOptions::default()
            },
        )
        .await?;
    assert_eq!(
        report.run.status,
        RunStatus::Succeeded,
        "{:?}",
        report.run.error
    );
    let result = report.result.context("result")?;
    assert!(result["steps"]["database"].is_object(), "{result}");
    assert!(result["steps"]["binaries"].is_object(), "{result}");

    // One snapshot holding the dump and the tree; the dump step ran first.
    let repo = runner.repository(false).await?;
    let snapshots = repo.snapshots(Some("nuxeo"))?;
    assert_eq!(snapshots.len(), 1);
    let mut paths = snapshots[0].paths.clone();
    paths.sort();
    assert!(
        paths.iter().any(|p| p.ends_with(".dump")) && paths.iter().any(|p| p.contains("binaries")),
        "{paths:?}"
    );
    let logs = runner.store().logs(&report.run.id)?;
    let position = |needle: &str| {
        logs.iter()
            .position(|l| l.message.contains(needle))
            .with_context(|| format!("no log line with {needle:?}"))
    };
    assert!(
        position("step `database` (task `builtin:postgres`) succeeded")?
            < position("step `binaries` (task `builtin:directory`) started")?
    );

    let restore = runner
        .run(
            "nuxeo",
            RunKind::Restore,
            RunOptions {
                overrides: params(overrides),
                ..RunOptions::default()
            },
        )
        .await?;
    assert_eq!(
        restore.run.status,
        RunStatus::Succeeded,
        "{:?}",
        restore.run.error
    );
    assert_eq!(
        table_digest(&target, "hierarchy")?,
        table_digest(&db, "hierarchy")?
    );
    assert_eq!(
        std::fs::read(restored.join("ab/cd/abcd1234"))?,
        vec![7u8; 300_000]
    );
    assert_eq!(std::fs::read(restored.join("ab/cd/abcd5678"))?, b"blob two");

    for name in [&db, &target] {
        psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"))?;
    }
    Ok(())
}

/// The Elasticsearch cluster of a test: `CAIRN_TEST_ELASTICSEARCH_URL`, or
/// a fresh test double (kept alive by the returned guard).
fn elasticsearch() -> (String, Option<cairn_es_test_server::EsServer>) {
    match std::env::var("CAIRN_TEST_ELASTICSEARCH_URL") {
        Ok(url) if !url.is_empty() => (url.trim_end_matches('/').to_string(), None),
        _ => {
            let server = cairn_es_test_server::EsServer::start(Default::default());
            (server.url(), Some(server))
        }
    }
}

async fn es(method: reqwest::Method, url: String, body: Option<Value>) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    let mut request = client.request(method, &url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    anyhow::ensure!(status.is_success(), "{url}: {status} {text}");
    Ok(serde_json::from_str(&text)?)
}

/// The Alien4Cloud example in a scratch directory: its runtime and config
/// directories, a `systemctl` stand-in that records its arguments in
/// `calls`, and a runner for the example pointed at `url`.
struct Alien4Cloud {
    scratch: Scratch,
    runtime: std::path::PathBuf,
    config: std::path::PathBuf,
    calls: std::path::PathBuf,
    runner: Runner,
}

impl Alien4Cloud {
    fn new(url: &str) -> anyhow::Result<Self> {
        let scratch = Scratch::new()?;
        let runtime = scratch.path("runtime");
        let config = scratch.path("config");
        std::fs::create_dir_all(runtime.join("csar/tosca-normative-types/1.0.0"))?;
        std::fs::write(
            runtime.join("csar/tosca-normative-types/1.0.0/types.yml"),
            "tosca_definitions_version: alien_dsl_1_4_0\n",
        )?;
        std::fs::create_dir_all(&config)?;
        std::fs::write(
            config.join("alien4cloud-config.yml"),
            "server:\n  port: 8088\n",
        )?;
        std::fs::write(scratch.path("password"), "a4c-example\n")?;
        let calls = scratch.path("systemctl-calls");
        let systemctl = scratch.path("systemctl");
        std::fs::write(
            &systemctl,
            format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()),
        )?;
        std::fs::set_permissions(
            &systemctl,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let quoted_systemctl = format!("{:?}", systemctl.display().to_string());
        let runner = example_runner(
            &scratch,
            "alien4cloud",
            &[
                ("/var/backups/cairn", &scratch.path("repo")),
                ("/etc/cairn/repository-password", &scratch.path("password")),
                ("/opt/alien4cloud/runtime", &runtime),
                ("/opt/alien4cloud/config", &config),
                ("http://127.0.0.1:9200", Path::new(url)),
                ("\"systemctl\"", Path::new(&quoted_systemctl)),
            ],
        )?;
        Ok(Self {
            scratch,
            runtime,
            config,
            calls,
            runner,
        })
    }

    async fn run(
        &self,
        kind: RunKind,
        overrides: Value,
    ) -> anyhow::Result<cairn::runner::RunReport> {
        self.runner
            .run(
                "alien4cloud",
                kind,
                RunOptions {
                    overrides: params(overrides),
                    ..RunOptions::default()
                },
            )
            .await
    }

    /// What the `systemctl` stand-in was asked, one call a line.
    fn calls(&self) -> String {
        std::fs::read_to_string(&self.calls).unwrap_or_default()
    }
}

/// Index `docs` small documents into `index` through `_bulk`.
async fn index_docs(url: &str, index: &str, docs: usize) -> anyhow::Result<()> {
    let mut bulk = String::new();
    for i in 0..docs {
        bulk.push_str(&format!(
            "{}\n{}\n",
            json!({"index": {"_index": index, "_id": format!("id-{i}")}}),
            json!({"name": format!("{index} {i}"), "version": i})
        ));
    }
    let response = reqwest::Client::new()
        .post(format!("{url}/_bulk?refresh=true"))
        .header("content-type", "application/x-ndjson")
        .body(bulk)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "bulk: {}",
        response.text().await?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alien4cloud_example_restores_indices_files_and_config_with_the_application_stopped()
-> anyhow::Result<()> {
    let (url, _server) = elasticsearch();
    let prefix = format!("a4c-{}", std::process::id());
    // Alien4Cloud's indices, with an alias the restore must move.
    for (index, docs) in [("application", 120), ("csar", 30)] {
        let name = format!("{prefix}-{index}");
        es(
            reqwest::Method::PUT,
            format!("{url}/{name}"),
            Some(json!({"aliases": {format!("{name}-alias"): {}}})),
        )
        .await?;
        index_docs(&url, &name, docs).await?;
    }
    let app = Alien4Cloud::new(&url)?;
    let overrides = json!({"indices": [format!("{prefix}-*")]});
    let report = app.run(RunKind::Backup, overrides.clone()).await?;
    assert_eq!(
        report.run.status,
        RunStatus::Succeeded,
        "{:?}",
        report.run.error
    );
    assert_eq!(app.calls(), "", "a backup does not stop the application");

    // Damage everything, then restore.
    std::fs::write(app.config.join("alien4cloud-config.yml"), "broken")?;
    std::fs::remove_dir_all(app.runtime.join("csar"))?;
    es(
        reqwest::Method::POST,
        format!("{url}/{prefix}-application/_doc/stray?refresh=true"),
        Some(json!({"name": "written after the backup"})),
    )
    .await?;

    let restore = app.run(RunKind::Restore, overrides).await?;
    assert_eq!(
        restore.run.status,
        RunStatus::Succeeded,
        "{:?}",
        restore.run.error
    );
    assert_eq!(
        app.calls(),
        "stop alien4cloud.service\nstart alien4cloud.service\n"
    );
    assert_eq!(
        std::fs::read_to_string(app.config.join("alien4cloud-config.yml"))?,
        "server:\n  port: 8088\n"
    );
    assert!(
        app.runtime
            .join("csar/tosca-normative-types/1.0.0/types.yml")
            .is_file()
    );
    // The alias now points at a restored index holding exactly the backed-up documents.
    let count = es(
        reqwest::Method::GET,
        format!("{url}/{prefix}-application-alias/_count"),
        None,
    )
    .await?;
    assert_eq!(count["count"], 120, "{count}");
    let aliases = es(
        reqwest::Method::GET,
        format!("{url}/_alias/{prefix}-application-alias"),
        None,
    )
    .await?;
    let holders: Vec<&String> = aliases.as_object().unwrap().keys().collect();
    assert_eq!(holders.len(), 1, "{aliases}");
    assert_ne!(holders[0], &format!("{prefix}-application"), "{aliases}");
    assert!(app.scratch.path("repo").is_dir());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alien4cloud_example_starts_the_application_again_when_the_restore_fails()
-> anyhow::Result<()> {
    let (url, _server) = elasticsearch();
    let index = format!("a4c-fail-{}", std::process::id());
    index_docs(&url, &index, 1).await?;
    let app = Alien4Cloud::new(&url)?;
    let backup = app
        .run(RunKind::Backup, json!({"indices": [index]}))
        .await?;
    assert_eq!(
        backup.run.status,
        RunStatus::Succeeded,
        "{:?}",
        backup.run.error
    );

    // The Elasticsearch step fails at restore (a cluster the job may not reach).
    let restore = app
        .run(
            RunKind::Restore,
            json!({"indices": [index], "es-url": "http://127.0.0.1:1"}),
        )
        .await?;
    assert_eq!(restore.run.status, RunStatus::Failed);
    let error = restore.run.error.unwrap_or_default();
    assert!(
        error.contains("step `indices` (task `builtin:elasticsearch-dump`) failed"),
        "{error}"
    );
    assert_eq!(
        app.calls(),
        "stop alien4cloud.service\nstart alien4cloud.service\n",
        "the application is started again after the failed restore"
    );
    Ok(())
}

/// The README's first command: `./quickstart.sh` as written, with the test
/// build of `cairn` instead of a release build and its files in a scratch
/// directory. It backs up the sample, restores it, compares the copy byte for
/// byte; then restic reads the repository it made.
#[test]
fn quickstart_script_backs_up_and_restores_the_sample() -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    let work = scratch.path("quickstart");
    let mut command = std::process::Command::new("bash");
    command
        .arg(workspace_root().join("quickstart.sh"))
        .env("CAIRN_BIN", crate::support::cairn_bin())
        .env("QUICKSTART_WORK", &work)
        .env("CAIRN_PASSWORD", "quickstart")
        .env("XDG_CACHE_HOME", crate::support::cli_xdg_cache_home())
        .env("CAIRN_LOG", "warn");
    let out = crate::support::run_with_timeout(command, std::time::Duration::from_secs(300))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        out.status.success(),
        "quickstart.sh failed ({:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("identical: every file, mode, symlink and directory came back"),
        "{stdout}"
    );
    assert!(
        work.join("restored").join("README.txt").is_file(),
        "nothing restored in {}",
        work.display()
    );
    let mut restic = std::process::Command::new("restic");
    restic
        .arg("-r")
        .arg(work.join("repository"))
        .args(["snapshots", "--json", "--no-cache"])
        .env("RESTIC_PASSWORD", "quickstart")
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD_FILE");
    let snapshots = crate::support::run_with_timeout(restic, std::time::Duration::from_secs(120))?;
    anyhow::ensure!(
        snapshots.status.success(),
        "restic snapshots failed: {}",
        String::from_utf8_lossy(&snapshots.stderr)
    );
    let list: Value = serde_json::from_slice(&snapshots.stdout)?;
    let tags = list
        .as_array()
        .and_then(|l| l.first())
        .and_then(|s| s["tags"].as_array())
        .cloned()
        .unwrap_or_default();
    assert!(tags.contains(&json!("job:sample")), "{list}");
    Ok(())
}
