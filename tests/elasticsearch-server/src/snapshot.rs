//! Snapshot repositories (`fs` only), snapshots and restore.
//!
//! Snapshots are really written as files under the repository location and read back from them,
//! so a repository directory can be archived, wiped, put back and registered on a fresh server.
//! The layout mirrors ES's names, but the contents are this server's own JSON, NOT ES's format:
//!
//! ```text
//! index.latest                          generation N, as decimal text
//! index-N                               repository data: snapshots (name, uuid, state, indices) and index ids
//! snap-UUID.dat                         the snapshot's info, exactly what GET _snapshot returns
//! meta-UUID.dat                         global state (persistent cluster settings)
//! indices/ID/meta-UUID.dat              one index's settings, mappings and aliases
//! indices/ID/0/snap-UUID.dat            shard summary: doc count, size
//! indices/ID/0/__UUID                   the documents: `{"_id":…,"_routing":…}` line, then the source line
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::App;
use crate::error::EsError;
use crate::store::{self, Doc, Expand, Index};
use crate::util::{
    flatten_settings, has_wildcard, iso_millis, new_uuid, now_millis, wildcard_match,
};

const FORMAT: &str = "cairn-es-test-server/1 (not Elasticsearch's repository format)";

/// Registered repositories and running snapshots.
#[derive(Default)]
pub struct Snapshots {
    repos: BTreeMap<String, Repo>,
    running: HashMap<(String, String), Running>,
}

#[derive(Clone)]
struct Repo {
    location: PathBuf,
    /// Settings as given (values stringified), for GET.
    settings: Value,
}

struct Running {
    info: Value,
    done: watch::Receiver<bool>,
    /// Deleting a running snapshot aborts it, as in ES.
    abort: Arc<tokio::sync::Notify>,
}

#[derive(Serialize, Deserialize, Default)]
struct RepoData {
    format: String,
    generation: u64,
    snapshots: Vec<RepoSnap>,
    /// Index name → repository index id (directory under `indices/`).
    indices: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone)]
struct RepoSnap {
    name: String,
    uuid: String,
    state: String,
    indices: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct IndexMeta {
    name: String,
    settings: BTreeMap<String, Value>,
    mappings: Map<String, Value>,
    aliases: BTreeMap<String, Value>,
}

#[derive(Serialize, Deserialize)]
struct ShardSummary {
    doc_count: usize,
    size_in_bytes: u64,
    file: String,
}

fn repo_exception(repo: &str, reason: String) -> EsError {
    EsError::new(500, "repository_exception", format!("[{repo}] {reason}"))
}

fn io_error(repo: &str, what: &str, e: std::io::Error) -> EsError {
    repo_exception(repo, format!("{what}: {e}"))
}

/// Lexically normalises a path (`a/./b/../c` → `a/c`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl App {
    fn snapshots(&self) -> std::sync::MutexGuard<'_, Snapshots> {
        self.snapshots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn repo(&self, name: &str) -> Result<Repo, EsError> {
        self.snapshots()
            .repos
            .get(name)
            .cloned()
            .ok_or_else(|| EsError::repository_missing(name))
    }
}

/// `PUT|POST /_snapshot/{repo}`.
pub fn put_repository(app: &App, name: &str, body: &Value) -> Result<Value, EsError> {
    let ty = body.get("type").and_then(Value::as_str).unwrap_or_default();
    if ty != "fs" {
        return Err(repo_exception(
            name,
            format!("repository type [{ty}] does not exist"),
        ));
    }
    let mut flat = BTreeMap::new();
    flatten_settings(body.get("settings").unwrap_or(&json!({})), "", &mut flat);
    let Some(location) = flat
        .get("location")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(repo_exception(name, "missing location".into()));
    };
    let root = normalize(&app.path_repo);
    let resolved = normalize(&root.join(&location));
    if !resolved.starts_with(&root) {
        return Err(repo_exception(
            name,
            format!(
                "location [{location}] doesn't match any of the locations specified by path.repo"
            ),
        ));
    }
    fs::create_dir_all(&resolved).map_err(|e| io_error(name, "cannot create blob store", e))?;
    // Verification, as ES does: the location must be writable.
    let probe = resolved.join(format!("tests-{}", new_uuid()));
    fs::write(&probe, b"cairn").map_err(|e| {
        EsError::new(
            500,
            "repository_verification_exception",
            format!("[{name}] path  is not accessible on master node"),
        )
        .caused_by(EsError::new(500, "i_o_exception", e.to_string()))
    })?;
    let _ = fs::remove_file(&probe);
    read_repo_data(name, &resolved)?;
    app.snapshots().repos.insert(
        name.to_string(),
        Repo {
            location: resolved,
            settings: crate::util::nest_settings(&flat),
        },
    );
    Ok(json!({ "acknowledged": true }))
}

/// `GET /_snapshot`, `GET /_snapshot/{repo|_all|pattern}`.
pub fn get_repositories(app: &App, expr: Option<&str>) -> Result<Value, EsError> {
    let snaps = app.snapshots();
    let mut out = Map::new();
    let exprs: Vec<&str> = expr.unwrap_or("_all").split(',').collect();
    for e in exprs {
        let mut found = false;
        for (name, repo) in &snaps.repos {
            if e == "_all" || e == "*" || wildcard_match(e, name) {
                found = true;
                out.insert(
                    name.clone(),
                    json!({ "type": "fs", "settings": repo.settings }),
                );
            }
        }
        if !found && !has_wildcard(e) && e != "_all" {
            return Err(EsError::repository_missing(e));
        }
    }
    Ok(Value::Object(out))
}

/// `DELETE /_snapshot/{repo}` (unregisters; files stay).
pub fn delete_repository(app: &App, name: &str) -> Result<Value, EsError> {
    let mut snaps = app.snapshots();
    let names: Vec<String> = snaps
        .repos
        .keys()
        .filter(|r| wildcard_match(name, r))
        .cloned()
        .collect();
    if names.is_empty() {
        return Err(EsError::repository_missing(name));
    }
    for n in names {
        snaps.repos.remove(&n);
    }
    Ok(json!({ "acknowledged": true }))
}

fn read_repo_data(repo: &str, location: &Path) -> Result<RepoData, EsError> {
    let latest = location.join("index.latest");
    let generation = match fs::read_to_string(&latest) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            repo_exception(
                repo,
                format!("corrupt index.latest at {}", latest.display()),
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RepoData::default()),
        Err(e) => return Err(io_error(repo, "cannot read index.latest", e)),
    };
    let path = location.join(format!("index-{generation}"));
    let bytes = fs::read(&path)
        .map_err(|e| io_error(repo, &format!("cannot read {}", path.display()), e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        repo_exception(
            repo,
            format!("corrupt repository data {}: {e}", path.display()),
        )
    })
}

fn write_repo_data(repo: &str, location: &Path, data: &mut RepoData) -> Result<(), EsError> {
    let previous = data.generation;
    data.generation += 1;
    data.format = FORMAT.to_string();
    let path = location.join(format!("index-{}", data.generation));
    let bytes = serde_json::to_vec_pretty(data).expect("serialisable");
    fs::write(&path, bytes).map_err(|e| io_error(repo, "cannot write repository data", e))?;
    let tmp = location.join("index.latest.tmp");
    fs::write(&tmp, data.generation.to_string())
        .map_err(|e| io_error(repo, "cannot write index.latest", e))?;
    fs::rename(&tmp, location.join("index.latest"))
        .map_err(|e| io_error(repo, "cannot write index.latest", e))?;
    if previous > 0 {
        let _ = fs::remove_file(location.join(format!("index-{previous}")));
    }
    Ok(())
}

fn read_info(repo: &str, location: &Path, uuid: &str) -> Result<Value, EsError> {
    let path = location.join(format!("snap-{uuid}.dat"));
    let bytes = fs::read(&path)
        .map_err(|e| io_error(repo, &format!("cannot read {}", path.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| repo_exception(repo, format!("corrupt {}: {e}", path.display())))
}

fn validate_snapshot_name(repo: &str, name: &str) -> Result<(), EsError> {
    let invalid = |why: &str| {
        EsError::new(
            400,
            "invalid_snapshot_name_exception",
            format!("[{repo}:{name}] Invalid snapshot name [{name}], {why}"),
        )
    };
    if name.is_empty() {
        return Err(invalid("cannot be empty"));
    }
    if name != name.to_lowercase() {
        return Err(invalid("must be lowercase"));
    }
    if name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#']) {
        return Err(invalid(
            "must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?]",
        ));
    }
    if name.starts_with('_') {
        return Err(invalid("must not start with '_'"));
    }
    Ok(())
}

fn indices_param(body: &Value) -> String {
    match body.get("indices") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ => "_all".to_string(),
    }
}

struct Captured {
    name: String,
    meta: IndexMeta,
    docs: Vec<Arc<Doc>>,
}

/// `PUT|POST /_snapshot/{repo}/{snap}`: returns (status, body).
pub async fn create(
    app: Arc<App>,
    repo_name: &str,
    snap: &str,
    wait: bool,
    body: &Value,
) -> Result<(u16, Value), EsError> {
    let repo = app.repo(repo_name)?;
    validate_snapshot_name(repo_name, snap)?;
    if app.faults.take_concurrent_snapshot_error() {
        return Err(EsError::new(
            503,
            "concurrent_snapshot_execution_exception",
            format!(
                "[{repo_name}:{snap}] cannot snapshot while a snapshot deletion is in-progress in [SnapshotDeletionsInProgress[[{repo_name}:cairn-other]]] (fault injected by the cairn test server)"
            ),
        ));
    }
    let flavor = app.flavor;
    let exists_on_disk = read_repo_data(repo_name, &repo.location)?
        .snapshots
        .iter()
        .any(|s| s.name == snap);
    let ignore_unavailable = body
        .get("ignore_unavailable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let include_global_state = body
        .get("include_global_state")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let (captured, global) = {
        let state = app.state();
        let names = state.resolve(
            &indices_param(body),
            Expand {
                ignore_unavailable,
                ..Expand::STRICT
            },
        )?;
        let captured: Vec<Captured> = names
            .iter()
            .map(|n| {
                let index = &state.indices[n];
                Captured {
                    name: n.clone(),
                    meta: IndexMeta {
                        name: n.clone(),
                        settings: index.user_settings(),
                        mappings: index.mappings.clone(),
                        aliases: index.aliases.clone(),
                    },
                    docs: index.live_docs().cloned().collect(),
                }
            })
            .collect();
        (captured, json!({ "persistent": state.persistent }))
    };
    let uuid = new_uuid();
    let start = now_millis();
    let indices: Vec<String> = captured.iter().map(|c| c.name.clone()).collect();
    let mut info = json!({
        "snapshot": snap,
        "uuid": uuid,
        "repository": repo_name,
        "version_id": flavor.version_id().parse::<u64>().expect("numeric"),
        "version": flavor.version(),
        "indices": indices,
        "data_streams": [],
        "include_global_state": include_global_state,
        "state": "IN_PROGRESS",
        "start_time": iso_millis(start),
        "start_time_in_millis": start,
        "end_time": iso_millis(0),
        "end_time_in_millis": 0,
        "duration_in_millis": 0,
        "failures": [],
        "shards": { "total": 0, "failed": 0, "successful": 0 },
        "feature_states": [],
    });
    if let Some(meta) = body.get("metadata") {
        info["metadata"] = meta.clone();
    }
    let (tx, rx) = watch::channel(false);
    let abort = Arc::new(tokio::sync::Notify::new());
    {
        let mut snaps = app.snapshots();
        let key = (repo_name.to_string(), snap.to_string());
        if exists_on_disk {
            return Err(EsError::new(
                400,
                "invalid_snapshot_name_exception",
                format!(
                    "[{repo_name}:{snap}] Invalid snapshot name [{snap}], snapshot with the same name already exists"
                ),
            ));
        }
        if snaps.running.contains_key(&key) {
            return Err(EsError::new(
                400,
                "invalid_snapshot_name_exception",
                format!(
                    "[{repo_name}:{snap}] Invalid snapshot name [{snap}], snapshot with the same name is already in-progress"
                ),
            ));
        }
        snaps.running.insert(
            key,
            Running {
                info: info.clone(),
                done: rx.clone(),
                abort: abort.clone(),
            },
        );
    }
    let outcome = app.faults.take_snapshot_outcome();
    let task_app = app.clone();
    let (repo_name_owned, snap_owned) = (repo_name.to_string(), snap.to_string());
    let delay = app.snapshot_delay;
    tokio::spawn(async move {
        let aborted = tokio::select! {
            () = tokio::time::sleep(delay) => false,
            () = abort.notified() => true,
        };
        if aborted {
            task_app
                .snapshots()
                .running
                .remove(&(repo_name_owned, snap_owned));
            let _ = tx.send(true);
            return;
        }
        let app2 = task_app.clone();
        let repo_for_write = repo_name_owned.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _guard = app2.repo_write.lock().unwrap_or_else(|e| e.into_inner());
            write_snapshot(
                &repo_for_write,
                &repo.location,
                info,
                captured,
                global,
                outcome,
                include_global_state,
            )
        })
        .await
        .unwrap_or_else(|e| {
            Err(repo_exception(
                &repo_name_owned,
                format!("snapshot task panicked: {e}"),
            ))
        });
        if let Err(e) = result {
            eprintln!(
                "cairn-es-test-server: snapshot [{repo_name_owned}:{snap_owned}] failed to write: {}",
                e.reason
            );
        }
        task_app
            .snapshots()
            .running
            .remove(&(repo_name_owned, snap_owned));
        let _ = tx.send(true);
    });
    if !wait {
        return Ok((200, json!({ "accepted": true })));
    }
    wait_done(rx).await;
    let repo = app.repo(repo_name)?;
    let data = read_repo_data(repo_name, &repo.location)?;
    let Some(entry) = data.snapshots.iter().find(|s| s.name == snap) else {
        return Err(EsError::snapshot_missing(repo_name, snap));
    };
    let info = read_info(repo_name, &repo.location, &entry.uuid)?;
    let status = match info["state"].as_str() {
        Some("FAILED") => 500,
        _ if info["shards"]["successful"] == 0 && info["shards"]["total"].as_u64() > Some(0) => 500,
        _ => 200,
    };
    Ok((status, json!({ "snapshot": info })))
}

async fn wait_done(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            break;
        }
    }
}

fn write_snapshot(
    repo: &str,
    location: &Path,
    mut info: Value,
    captured: Vec<Captured>,
    global: Value,
    outcome: Option<(String, String)>,
    include_global_state: bool,
) -> Result<(), EsError> {
    let uuid = info["uuid"].as_str().expect("uuid").to_string();
    let mut data = read_repo_data(repo, location)?;
    let total = captured.len();
    let mut failures = Vec::new();
    let failing: Vec<bool> = match &outcome {
        Some((state, _)) if state == "FAILED" => vec![true; total],
        Some(_) => (0..total).map(|i| i == 0).collect(),
        None => vec![false; total],
    };
    for (c, fails) in captured.iter().zip(&failing) {
        let index_id = data
            .indices
            .entry(c.name.clone())
            .or_insert_with(new_uuid)
            .clone();
        let dir = location.join("indices").join(&index_id);
        let shard_dir = dir.join("0");
        fs::create_dir_all(&shard_dir)
            .map_err(|e| io_error(repo, "cannot create index directory", e))?;
        let meta = serde_json::to_vec_pretty(&c.meta).expect("serialisable");
        fs::write(dir.join(format!("meta-{uuid}.dat")), meta)
            .map_err(|e| io_error(repo, "cannot write index metadata", e))?;
        if *fails {
            let reason = outcome.as_ref().map(|o| o.1.clone()).unwrap_or_default();
            failures.push(json!({
                "index": c.name,
                "index_uuid": c.name,
                "shard_id": 0,
                "reason": reason,
                "node_id": "cairn-test-node",
                "status": "INTERNAL_SERVER_ERROR",
            }));
            continue;
        }
        let file = format!("__{uuid}");
        let out = fs::File::create(shard_dir.join(&file))
            .map_err(|e| io_error(repo, "cannot write shard data", e))?;
        let mut w = BufWriter::with_capacity(1 << 20, out);
        let mut size = 0u64;
        for doc in &c.docs {
            let meta = match &doc.routing {
                Some(r) => json!({ "_id": &*doc.id, "_routing": &**r }),
                None => json!({ "_id": &*doc.id }),
            };
            let line = serde_json::to_vec(&meta).expect("serialisable");
            size += (line.len() + doc.source.len() + 2) as u64;
            w.write_all(&line)
                .and_then(|_| w.write_all(b"\n"))
                .and_then(|_| w.write_all(&doc.source))
                .and_then(|_| w.write_all(b"\n"))
                .map_err(|e| io_error(repo, "cannot write shard data", e))?;
        }
        w.flush()
            .map_err(|e| io_error(repo, "cannot write shard data", e))?;
        let summary = ShardSummary {
            doc_count: c.docs.len(),
            size_in_bytes: size,
            file,
        };
        fs::write(
            shard_dir.join(format!("snap-{uuid}.dat")),
            serde_json::to_vec_pretty(&summary).expect("serialisable"),
        )
        .map_err(|e| io_error(repo, "cannot write shard summary", e))?;
    }
    if include_global_state {
        fs::write(
            location.join(format!("meta-{uuid}.dat")),
            serde_json::to_vec_pretty(&global).expect("json"),
        )
        .map_err(|e| io_error(repo, "cannot write global metadata", e))?;
    }
    let failed = failures.len();
    let state = match &outcome {
        Some((state, _)) => state.clone(),
        None => "SUCCESS".to_string(),
    };
    let end = now_millis().max(info["start_time_in_millis"].as_u64().unwrap_or(0));
    let start = info["start_time_in_millis"].as_u64().unwrap_or(end);
    info["state"] = json!(state);
    info["end_time"] = json!(iso_millis(end));
    info["end_time_in_millis"] = json!(end);
    info["duration_in_millis"] = json!(end - start);
    info["failures"] = json!(failures);
    info["shards"] = json!({ "total": total, "failed": failed, "successful": total - failed });
    if state == "FAILED" {
        info["reason"] = json!(outcome.map(|o| o.1).unwrap_or_default());
    }
    fs::write(
        location.join(format!("snap-{uuid}.dat")),
        serde_json::to_vec_pretty(&info).expect("json"),
    )
    .map_err(|e| io_error(repo, "cannot write snapshot info", e))?;
    data.snapshots.push(RepoSnap {
        name: info["snapshot"].as_str().expect("name").to_string(),
        uuid,
        state,
        indices: captured.iter().map(|c| c.name.clone()).collect(),
    });
    write_repo_data(repo, location, &mut data)
}

/// The snapshots of `repo` matching `expr` (`_all`, `*`, names, wildcards, `_current`), in start order.
fn find_snapshots(
    app: &App,
    repo_name: &str,
    expr: &str,
    ignore_unavailable: bool,
) -> Result<Vec<Value>, EsError> {
    let repo = app.repo(repo_name)?;
    let data = read_repo_data(repo_name, &repo.location)?;
    let running: Vec<Value> = app
        .snapshots()
        .running
        .iter()
        .filter(|((r, _), _)| r == repo_name)
        .map(|(_, run)| run.info.clone())
        .collect();
    let mut out: Vec<Value> = Vec::new();
    for part in expr.split(',') {
        let mut found = false;
        if part == "_current" {
            out.extend(running.iter().cloned());
            continue;
        }
        for s in &data.snapshots {
            if part == "_all" || wildcard_match(part, &s.name) {
                found = true;
                if !out.iter().any(|v| v["uuid"] == s.uuid.as_str()) {
                    out.push(read_info(repo_name, &repo.location, &s.uuid)?);
                }
            }
        }
        for r in &running {
            if part == "_all" || wildcard_match(part, r["snapshot"].as_str().unwrap_or_default()) {
                found = true;
                if !out.iter().any(|v| v["uuid"] == r["uuid"]) {
                    out.push(r.clone());
                }
            }
        }
        if !found && !has_wildcard(part) && part != "_all" && !ignore_unavailable {
            return Err(EsError::snapshot_missing(repo_name, part));
        }
    }
    out.sort_by_key(|v| v["start_time_in_millis"].as_u64().unwrap_or(0));
    Ok(out)
}

/// `GET /_snapshot/{repo}/{snap}`.
pub fn get(app: &App, repo: &str, expr: &str, ignore_unavailable: bool) -> Result<Value, EsError> {
    let snapshots = find_snapshots(app, repo, expr, ignore_unavailable)?;
    let total = snapshots.len();
    Ok(json!({ "snapshots": snapshots, "total": total, "remaining": 0 }))
}

/// `GET /_snapshot/{repo}/{snap}/_status`, `GET /_snapshot/{repo}/_status`, `GET /_snapshot/_status`.
pub fn status(app: &App, repo: Option<&str>, expr: Option<&str>) -> Result<Value, EsError> {
    let infos: Vec<Value> = match (repo, expr) {
        (Some(repo), Some(expr)) => find_snapshots(app, repo, expr, false)?,
        (repo, _) => app
            .snapshots()
            .running
            .iter()
            .filter(|((r, _), _)| repo.is_none_or(|want| want == r))
            .map(|(_, run)| run.info.clone())
            .collect(),
    };
    let mut out = Vec::new();
    for info in infos {
        let repo_name = info["repository"].as_str().unwrap_or_default().to_string();
        let location = app.repo(&repo_name).ok().map(|r| r.location);
        let running = info["state"] == "IN_PROGRESS";
        let start = info["start_time_in_millis"].as_u64().unwrap_or(0);
        let duration = info["duration_in_millis"].as_u64().unwrap_or(0);
        let failed_indices: Vec<&str> = info["failures"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| x["index"].as_str()).collect())
            .unwrap_or_default();
        let data = match &location {
            Some(l) if !running => Some(read_repo_data(&repo_name, l)?),
            _ => None,
        };
        let mut indices = Map::new();
        let (mut files, mut bytes, mut done, mut failed) = (0u64, 0u64, 0u64, 0u64);
        for index in info["indices"].as_array().cloned().unwrap_or_default() {
            let name = index.as_str().unwrap_or_default();
            let (stage, size) = if running {
                ("STARTED", 0)
            } else if failed_indices.contains(&name) {
                ("FAILURE", 0)
            } else {
                let size = data
                    .as_ref()
                    .and_then(|d| d.indices.get(name))
                    .zip(location.as_ref())
                    .and_then(|(id, l)| {
                        fs::read(l.join("indices").join(id).join("0").join(format!(
                            "snap-{}.dat",
                            info["uuid"].as_str().unwrap_or_default()
                        )))
                        .ok()
                    })
                    .and_then(|b| serde_json::from_slice::<ShardSummary>(&b).ok())
                    .map(|s| s.size_in_bytes)
                    .unwrap_or(0);
                ("DONE", size)
            };
            match stage {
                "DONE" => {
                    done += 1;
                    files += 1;
                    bytes += size;
                }
                "FAILURE" => failed += 1,
                _ => {}
            }
            let stats = json!({
                "incremental": { "file_count": u64::from(stage == "DONE"), "size_in_bytes": size },
                "total": { "file_count": u64::from(stage == "DONE"), "size_in_bytes": size },
                "start_time_in_millis": start,
                "time_in_millis": duration,
            });
            let shard_stats = json!({
                "initializing": 0, "started": u64::from(stage == "STARTED"), "finalizing": 0,
                "done": u64::from(stage == "DONE"), "failed": u64::from(stage == "FAILURE"), "total": 1,
            });
            indices.insert(
                name.to_string(),
                json!({ "shards_stats": shard_stats, "stats": stats, "shards": { "0": { "stage": stage, "stats": stats } } }),
            );
        }
        let total = info["indices"].as_array().map(Vec::len).unwrap_or(0) as u64;
        out.push(json!({
            "snapshot": info["snapshot"],
            "repository": repo_name,
            "uuid": info["uuid"],
            "state": if running { "STARTED" } else { info["state"].as_str().unwrap_or("SUCCESS") },
            "include_global_state": info["include_global_state"],
            "shards_stats": {
                "initializing": 0, "started": if running { total } else { 0 }, "finalizing": 0,
                "done": done, "failed": failed, "total": total,
            },
            "stats": {
                "incremental": { "file_count": files, "size_in_bytes": bytes },
                "total": { "file_count": files, "size_in_bytes": bytes },
                "start_time_in_millis": start,
                "time_in_millis": duration,
            },
            "indices": indices,
        }));
    }
    Ok(json!({ "snapshots": out }))
}

/// `DELETE /_snapshot/{repo}/{snap}` (a running snapshot is waited for, then deleted).
pub async fn delete(app: Arc<App>, repo_name: &str, expr: &str) -> Result<Value, EsError> {
    let running: Vec<(String, watch::Receiver<bool>, Arc<tokio::sync::Notify>)> = app
        .snapshots()
        .running
        .iter()
        .filter(|((r, s), _)| r == repo_name && expr.split(',').any(|e| wildcard_match(e, s)))
        .map(|((_, s), run)| (s.clone(), run.done.clone(), run.abort.clone()))
        .collect();
    let mut aborted = Vec::new();
    for (name, rx, abort) in running {
        abort.notify_one();
        wait_done(rx).await;
        aborted.push(name);
    }
    let repo = app.repo(repo_name)?;
    let _guard = app.repo_write.lock().unwrap_or_else(|e| e.into_inner());
    let mut data = read_repo_data(repo_name, &repo.location)?;
    let mut doomed = Vec::new();
    for part in expr.split(',') {
        let matched: Vec<RepoSnap> = data
            .snapshots
            .iter()
            .filter(|s| part == "_all" || wildcard_match(part, &s.name))
            .cloned()
            .collect();
        if matched.is_empty() && !has_wildcard(part) && !aborted.iter().any(|a| a == part) {
            return Err(EsError::snapshot_missing(repo_name, part));
        }
        doomed.extend(matched);
    }
    for snap in &doomed {
        let _ = fs::remove_file(repo.location.join(format!("snap-{}.dat", snap.uuid)));
        let _ = fs::remove_file(repo.location.join(format!("meta-{}.dat", snap.uuid)));
        for index in &snap.indices {
            if let Some(id) = data.indices.get(index) {
                let dir = repo.location.join("indices").join(id);
                let _ = fs::remove_file(dir.join(format!("meta-{}.dat", snap.uuid)));
                let _ = fs::remove_file(dir.join("0").join(format!("snap-{}.dat", snap.uuid)));
                let _ = fs::remove_file(dir.join("0").join(format!("__{}", snap.uuid)));
            }
        }
        data.snapshots.retain(|s| s.uuid != snap.uuid);
    }
    // Forget index ids no snapshot refers to any more, and their directories.
    let used: Vec<String> = data
        .snapshots
        .iter()
        .flat_map(|s| s.indices.clone())
        .collect();
    let unused: Vec<(String, String)> = data
        .indices
        .iter()
        .filter(|(name, _)| !used.contains(name))
        .map(|(n, id)| (n.clone(), id.clone()))
        .collect();
    for (name, id) in unused {
        let _ = fs::remove_dir_all(repo.location.join("indices").join(&id));
        data.indices.remove(&name);
    }
    write_repo_data(repo_name, &repo.location, &mut data)?;
    Ok(json!({ "acknowledged": true }))
}

fn restore_error(repo: &str, snap: &str, uuid: &str, reason: String) -> EsError {
    EsError::new(
        500,
        "snapshot_restore_exception",
        format!("[{repo}:{snap}/{uuid}] {reason}"),
    )
}

/// `POST /_snapshot/{repo}/{snap}/_restore`.
pub fn restore(
    app: &App,
    repo_name: &str,
    snap: &str,
    wait: bool,
    body: &Value,
) -> Result<Value, EsError> {
    let repo = app.repo(repo_name)?;
    if app
        .snapshots()
        .running
        .contains_key(&(repo_name.to_string(), snap.to_string()))
    {
        return Err(EsError::new(
            503,
            "concurrent_snapshot_execution_exception",
            format!("[{repo_name}:{snap}] cannot restore a snapshot that is in progress"),
        ));
    }
    let data = read_repo_data(repo_name, &repo.location)?;
    let Some(entry) = data.snapshots.iter().find(|s| s.name == snap) else {
        return Err(EsError::snapshot_missing(repo_name, snap));
    };
    let uuid = entry.uuid.clone();
    let info = read_info(repo_name, &repo.location, &uuid)?;
    let err = |reason: String| restore_error(repo_name, snap, &uuid, reason);
    if info["state"] == "FAILED" {
        return Err(err("unsupported snapshot state [FAILED]".into()));
    }
    let partial = body
        .get("partial")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let ignore_unavailable = body
        .get("ignore_unavailable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let include_aliases = body
        .get("include_aliases")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let include_global_state = body
        .get("include_global_state")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // Which of the snapshot's indices.
    let mut selected: Vec<String> = Vec::new();
    for part in indices_param(body)
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if let Some(excluded) = part.strip_prefix('-') {
            selected.retain(|i| !wildcard_match(excluded, i));
            continue;
        }
        let matched: Vec<&String> = entry
            .indices
            .iter()
            .filter(|i| part == "_all" || wildcard_match(part, i))
            .collect();
        if matched.is_empty() && !has_wildcard(part) && part != "_all" && !ignore_unavailable {
            return Err(err(format!("index [{part}] not found in snapshot")).with("index", part));
        }
        for m in matched {
            if !selected.contains(m) {
                selected.push(m.clone());
            }
        }
    }
    let failed: Vec<&str> = info["failures"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x["index"].as_str()).collect())
        .unwrap_or_default();
    if let Some(bad) = selected.iter().find(|i| failed.contains(&i.as_str()))
        && !partial
    {
        return Err(err(format!(
            "index [{bad}] wasn't fully snapshotted - cannot restore"
        )));
    }
    selected.retain(|i| !failed.contains(&i.as_str()));
    // Renames.
    let rename = match (
        body.get("rename_pattern").and_then(Value::as_str),
        body.get("rename_replacement").and_then(Value::as_str),
    ) {
        (Some(p), Some(r)) => Some((
            regex::Regex::new(p).map_err(|e| {
                EsError::illegal_argument(format!("invalid rename_pattern [{p}]: {e}"))
            })?,
            java_replacement(r),
        )),
        _ => None,
    };
    let targets: Vec<(String, String)> = selected
        .iter()
        .map(|i| {
            let new = match &rename {
                Some((re, rep)) => re.replace_all(i, rep.as_str()).into_owned(),
                None => i.clone(),
            };
            (i.clone(), new)
        })
        .collect();
    let mut overrides = BTreeMap::new();
    if let Some(s) = body.get("index_settings") {
        overrides = store::index_settings_from(s)?;
    }
    let ignored: Vec<String> = match body.get("ignore_index_settings") {
        Some(Value::String(s)) => s.split(',').map(|s| s.trim().to_string()).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    // Load everything before touching the cluster.
    let mut loaded: Vec<(String, IndexMeta, Vec<u8>)> = Vec::new();
    for (old, new) in &targets {
        store::validate_index_name(new)?;
        let id = data
            .indices
            .get(old)
            .ok_or_else(|| err(format!("index [{old}] has no data in the repository")))?;
        let dir = repo.location.join("indices").join(id);
        let meta_bytes = fs::read(dir.join(format!("meta-{uuid}.dat"))).map_err(|e| {
            io_error(
                repo_name,
                &format!("cannot read metadata of index [{old}]"),
                e,
            )
        })?;
        let meta: IndexMeta = serde_json::from_slice(&meta_bytes).map_err(|e| {
            repo_exception(repo_name, format!("corrupt metadata of index [{old}]: {e}"))
        })?;
        let docs = fs::read(dir.join("0").join(format!("__{uuid}")))
            .map_err(|e| io_error(repo_name, &format!("cannot read data of index [{old}]"), e))?;
        loaded.push((new.clone(), meta, docs));
    }
    let mut state = app.state();
    for (new, _, _) in &loaded {
        if state.indices.contains_key(new) {
            return Err(err(format!(
                "cannot restore index [{new}] because an open index with same name already exists in the cluster. Either close or delete the existing index or restore the index under a different name by providing a rename pattern and replacement name"
            )));
        }
        if state.is_alias(new) {
            return Err(err(format!(
                "cannot restore index [{new}] because an alias with the same name already exists"
            )));
        }
    }
    let mut restored = Vec::new();
    for (new, meta, docs) in loaded {
        let mut settings = meta.settings.clone();
        settings.retain(|k, _| !ignored.iter().any(|i| wildcard_match(i, k)));
        for (k, v) in &overrides {
            settings.insert(k.clone(), v.clone());
        }
        let mut index = Index::new(&new, settings, app.flavor);
        index.mappings = meta.mappings.clone();
        if include_aliases {
            for (alias, props) in &meta.aliases {
                if state.indices.contains_key(alias) {
                    return Err(err(format!(
                        "cannot restore alias [{alias}]: an index with the same name exists"
                    )));
                }
                index.aliases.insert(alias.clone(), props.clone());
            }
        }
        let mut lines = docs.split(|&b| b == b'\n');
        while let Some(meta_line) = lines.next() {
            if meta_line.is_empty() {
                continue;
            }
            let m: Value = serde_json::from_slice(meta_line).map_err(|e| {
                repo_exception(
                    repo_name,
                    format!("corrupt data of index [{}]: {e}", meta.name),
                )
            })?;
            let source = lines.next().ok_or_else(|| {
                repo_exception(
                    repo_name,
                    format!("truncated data of index [{}]", meta.name),
                )
            })?;
            index.put(
                m["_id"].as_str().unwrap_or_default(),
                m["_routing"].as_str(),
                Box::from(source),
            );
        }
        state.indices.insert(new.clone(), index);
        restored.push(new);
    }
    if include_global_state
        && let Ok(bytes) = fs::read(repo.location.join(format!("meta-{uuid}.dat")))
        && let Ok(global) = serde_json::from_slice::<Value>(&bytes)
        && let Some(p) = global["persistent"].as_object()
    {
        for (k, v) in p {
            state.persistent.insert(k.clone(), v.clone());
        }
    }
    if !wait {
        return Ok(json!({ "accepted": true }));
    }
    let n = restored.len();
    Ok(
        json!({ "snapshot": { "snapshot": snap, "indices": restored, "shards": { "total": n, "failed": 0, "successful": n } } }),
    )
}

/// Java's `$1` group references, spelled for the `regex` crate (`${1}`).
fn java_replacement(r: &str) -> String {
    let mut out = String::new();
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    if n == '$' {
                        out.push_str("$$");
                    } else {
                        out.push(n);
                    }
                }
            }
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push_str("${");
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    out.push(d);
                    chars.next();
                }
                out.push('}');
            }
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    out
}

/// How long a snapshot stays `IN_PROGRESS` by default.
pub const DEFAULT_DELAY: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_group_references_are_translated() {
        let re = regex::Regex::new("(.+)").unwrap();
        assert_eq!(
            re.replace_all("logs", java_replacement("restored_$1").as_str()),
            "restored_logs"
        );
        assert_eq!(re.replace_all("a", java_replacement("$1b").as_str()), "ab");
    }
}
