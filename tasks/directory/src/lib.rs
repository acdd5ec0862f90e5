//! `builtin:directory`: a Task that backs up granted directories as tree
//! artifacts (restic trees: contents, modes, times and symlinks) and restores
//! them into a granted target directory. The bytes never pass through the
//! module: the host reads and writes the files.
//!
//! # Params
//!
//! - `paths` (required): absolute paths of the directories to back up, each
//!   granted in `allow.paths` (`read` is enough). (A file works too; it is
//!   restored as `<destination>/<artifact name>`.)
//! - `target` (restore, required there): the absolute directory to restore
//!   into, granted `read-write`.
//! - `overwrite` (restore, default `false`): restore into a directory that is
//!   not empty. Without it a restore refuses one, naming a few of its entries.
//! - `only` (restore, optional): the artifacts to restore, by artifact name
//!   or original path; default all of them.
//!
//! # Artifacts
//!
//! Each path becomes one tree artifact named after it: the path's components
//! joined by `-`, with every character outside `[A-Za-z0-9._-]` replaced by
//! `_` and a leading `.` by `_` (`/srv/data` → `srv-data`,
//! `/home/me/.config` → `home-me-.config`, `/` → `root`). Names must be
//! unique in a snapshot, so paths that would share a name (`/srv/a-b` and
//! `/srv/a/b`) are refused, and so are a path listed twice or a path inside
//! another listed path (it would be stored twice). The snapshot note `paths`
//! maps each artifact name to its original path, as a JSON object.
//!
//! # Restore layout
//!
//! - A snapshot of **one** path is restored straight into `target`: the
//!   directory's contents become `target`'s contents. To restore in place,
//!   set `target` to the original path (and `overwrite = true`).
//! - A snapshot of **several** paths restores each into
//!   `<target>/<artifact name>` (`/srv/restore/srv-data`,
//!   `/srv/restore/etc-app`), also when `only` picks just one of them, so
//!   where a tree lands depends only on the snapshot.
//!
//! - In a snapshot written by several `directory` steps of a pipeline, a
//!   restore whose `paths` are only some of the snapshot's trees restores
//!   just those, laid out as above for that many paths. (The note `paths`
//!   accumulates across the steps.)
//!
//! Unless `overwrite` is set, every destination is checked before anything is
//! restored: each must be missing or empty. The module lists it through its
//! WASI view of the granted paths; a destination it cannot see (missing, or
//! not granted) counts as missing, and the host's own grant check refuses the
//! restore if the target is not granted `read-write`.
//!
//! # Example
//!
//! ```toml
//! [jobs.app-files]
//! task = "builtin:directory"
//! params = { paths = ["/srv/app/uploads", "/etc/app"], target = "/srv/restore" }
//! schedule = "30 2 * * *"
//!
//! [jobs.app-files.allow]
//! paths = { "/srv/app/uploads" = "read", "/etc/app" = "read", "/srv/restore" = "read-write" }
//! ```
//!
//! `cairn backup app-files` stores trees `srv-app-uploads` and `etc-app`;
//! `cairn restore app-files` restores them into `/srv/restore/srv-app-uploads`
//! and `/srv/restore/etc-app`; `--set only='["etc-app"]'` restores one.
//!
//! Backup result: `{"artifacts": [{"name", "path", "size"}], "bytes": total}`.
//! Restore result: `{"artifacts": [{"name", "path", "target", "size"}],
//! "bytes": total}` (`path` is `null` for a tree this task did not write).

use std::collections::{BTreeMap, BTreeSet};

use cairn_guest::progress::{self, Unit};
use cairn_guest::storage::{self, ArtifactKind};
use cairn_guest::{
    Context, Description, Error, ErrorContext, Param, Result, Task, Value, json, log, paths,
    serde_json,
};
use serde::Deserialize;

/// The snapshot note mapping artifact names to the paths they came from.
const PATHS_NOTE: &str = "paths";

/// Longest artifact name: it becomes a directory name at restore.
const MAX_NAME_BYTES: usize = 255;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    paths: Vec<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    overwrite: bool,
    #[serde(default)]
    only: Option<Vec<String>>,
}

/// One path to back up and the artifact it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    path: String,
}

/// One tree to restore and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    name: String,
    /// The path it was backed up from, if the snapshot says.
    path: Option<String>,
    dest: String,
}

/// `raw` as a clean absolute path: no empty or `.` components, no trailing
/// `/`. `param` names the param it came from, for errors.
fn normalize_path(param: &str, raw: &str) -> Result<String> {
    paths::normalize(raw, &format!("{raw:?} in `{param}`"))
}

/// Whether `inner` lies strictly inside directory `outer` (both normalized).
fn is_inside(inner: &str, outer: &str) -> bool {
    inner != outer && (outer == "/" || inner.starts_with(&format!("{outer}/")))
}

/// Validate `paths` and name each one.
fn plan_backup(paths: &[String]) -> Result<Vec<Entry>> {
    if paths.is_empty() {
        return Err(Error::invalid(
            "invalid params: `paths` is empty; list the directories to back up, e.g. [\"/srv/data\"]",
        ));
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(paths.len());
    for raw in paths {
        let path = normalize_path("paths", raw)?;
        for other in &entries {
            if other.path == path {
                return Err(Error::invalid(format!(
                    "invalid params: `paths` lists {path} twice"
                )));
            }
            if let Some((inner, outer)) = [(&path, &other.path), (&other.path, &path)]
                .into_iter()
                .find(|(inner, outer)| is_inside(inner, outer))
            {
                return Err(Error::invalid(format!(
                    "invalid params: `paths` lists {inner}, which lies inside {outer}, also listed; \
                     it would be stored twice, so list only {outer}"
                )));
            }
        }
        let name = paths::artifact_name(&path);
        if name.len() > MAX_NAME_BYTES {
            return Err(Error::invalid(format!(
                "invalid params: {path} makes an artifact name longer than {MAX_NAME_BYTES} bytes; \
                 back up a shorter parent directory instead"
            )));
        }
        if let Some(other) = entries.iter().find(|e| e.name == name) {
            return Err(Error::invalid(format!(
                "invalid params: {} and {path} would both be stored as artifact `{name}`; \
                 back up a common parent directory instead, or use one job for each",
                other.path
            )));
        }
        entries.push(Entry { name, path });
    }
    Ok(entries)
}

/// The trees of the snapshot, by name, with their original paths: from the
/// `paths` note, or (for a snapshot this task did not write) its list of
/// tree artifacts.
fn parse_paths_note(text: &str) -> Result<BTreeMap<String, Option<String>>> {
    let map: BTreeMap<String, String> = serde_json::from_str(text).map_err(|e| {
        Error::failed(format!(
            "the snapshot's note `{PATHS_NOTE}` is not a JSON object of artifact names to paths: {e}"
        ))
    })?;
    Ok(map.into_iter().map(|(k, v)| (k, Some(v))).collect())
}

/// `name` under `dir`.
fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// "`a` (/srv/a), `b`": the trees a snapshot holds, for errors.
fn list_trees(trees: &BTreeMap<String, Option<String>>) -> String {
    trees
        .iter()
        .map(|(name, path)| match path {
            Some(path) => format!("`{name}` ({path})"),
            None => format!("`{name}`"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where each selected tree of the snapshot goes: one tree straight into
/// `target`, several into `<target>/<name>`. `only` selects by artifact
/// name or original path.
fn plan_restore(
    trees: &BTreeMap<String, Option<String>>,
    target: &str,
    only: Option<&[String]>,
) -> Result<Vec<Placement>> {
    if trees.is_empty() {
        return Err(Error::not_found(
            "the snapshot holds no directory trees to restore",
        ));
    }
    let selected: BTreeSet<&str> = match only {
        None => trees.keys().map(String::as_str).collect(),
        Some([]) => {
            return Err(Error::invalid(
                "invalid params: `only` is an empty list; leave it out to restore every directory",
            ));
        }
        Some(wanted) => {
            let mut selected = BTreeSet::new();
            for want in wanted {
                let by_path = normalize_path("only", want).ok();
                let found = trees.iter().find(|(name, path)| {
                    *name == want || (by_path.is_some() && path.as_deref() == by_path.as_deref())
                });
                match found {
                    Some((name, _)) => selected.insert(name.as_str()),
                    None => {
                        return Err(Error::not_found(format!(
                            "`only` names {want:?}, but the snapshot holds no such directory; it holds {}",
                            list_trees(trees)
                        )));
                    }
                };
            }
            selected
        }
    };
    let single = trees.len() == 1;
    Ok(trees
        .iter()
        .filter(|(name, _)| selected.contains(name.as_str()))
        .map(|(name, path)| Placement {
            name: name.clone(),
            path: path.clone(),
            dest: if single {
                target.to_owned()
            } else {
                join(target, name)
            },
        })
        .collect())
}

/// The trees of the snapshot being restored.
fn snapshot_trees() -> Result<BTreeMap<String, Option<String>>> {
    if let Some(text) = storage::note(PATHS_NOTE)? {
        return parse_paths_note(&text);
    }
    log::warn(format!(
        "the snapshot has no note `{PATHS_NOTE}` (it was not written by this task); \
         restoring its tree artifacts"
    ));
    Ok(storage::list()?
        .into_iter()
        .filter(|a| a.kind == ArtifactKind::Tree)
        .map(|a| (a.name, None))
        .collect())
}

struct DirectoryTask;

impl Task for DirectoryTask {
    fn describe() -> Description {
        Description::new("directory", env!("CARGO_PKG_VERSION"))
            .summary(
                "Backs up granted directories as restic trees; restores them to a granted target",
            )
            .param(Param::required(
                "paths",
                "Absolute paths of the directories to back up, e.g. [\"/srv/data\"]; each must be \
                 granted in allow.paths. Each becomes a tree artifact named after its path \
                 (/srv/data -> srv-data)",
            ))
            .param(Param::optional(
                "target",
                "Restore: absolute directory to restore into, granted read-write. A snapshot of \
                 one path is restored straight into it, of several into <target>/<artifact name>",
                None,
            ))
            .param(Param::optional(
                "overwrite",
                "Restore: restore into a destination that is not empty (otherwise refused)",
                json!(false),
            ))
            .param(Param::optional(
                "only",
                "Restore: artifact names or original paths to restore (default: all)",
                None,
            ))
            .needs_path("{paths}")
            .needs_path("{target}")
    }

    fn backup(ctx: Context) -> Result<Value> {
        let params: Params = ctx.params()?;
        let entries = plan_backup(&params.paths)?;
        // Merge with what an earlier step of the same run (a pipeline with
        // several directory steps) noted.
        let mut note: BTreeMap<String, String> = match storage::note(PATHS_NOTE)? {
            Some(text) => serde_json::from_str(&text).unwrap_or_default(),
            None => BTreeMap::new(),
        };
        for e in &entries {
            if note.contains_key(&e.name) {
                return Err(Error::invalid(format!(
                    "`{}` is already in this snapshot as `{}` (an earlier step backed it up)",
                    e.path, e.name
                )));
            }
            note.insert(e.name.clone(), e.path.clone());
        }
        storage::set_note(PATHS_NOTE, &serde_json::to_string(&note)?)?;

        let total = entries.len() as u64;
        progress::report(0, total, Unit::Items);
        let mut artifacts = Vec::with_capacity(entries.len());
        let mut bytes = 0u64;
        for (done, entry) in (1..).zip(&entries) {
            let artifact = storage::add_tree(&entry.name, &entry.path)
                .with_context(|| format!("backing up {}", entry.path))?;
            log::info_with(
                format!(
                    "backed up {} as `{}` ({})",
                    entry.path,
                    entry.name,
                    cairn_guest::format_size(artifact.size)
                ),
                &[("artifact", &entry.name), ("bytes", &artifact.size)],
            );
            progress::report(done, total, Unit::Items);
            bytes = bytes.saturating_add(artifact.size);
            artifacts.push(json!({
                "name": entry.name,
                "path": entry.path,
                "size": artifact.size,
            }));
        }
        Ok(json!({ "artifacts": artifacts, "bytes": bytes }))
    }

    fn restore(ctx: Context) -> Result<Value> {
        let params: Params = ctx.params()?;
        let target = params.target.as_deref().ok_or_else(|| {
            Error::invalid(
                "invalid params: a restore needs `target`, the absolute directory to restore \
                 into (e.g. `cairn restore JOB --set target=/srv/restore`), granted read-write \
                 in `allow.paths`",
            )
        })?;
        let target = normalize_path("target", target)?;
        let trees = snapshot_trees()?;
        // A snapshot written by several directory steps (a pipeline) holds
        // more trees than this step's `paths`: restore just those.
        let own: Option<Vec<String>> = plan_backup(&params.paths).ok().and_then(|entries| {
            let names: Vec<String> = entries.into_iter().map(|e| e.name).collect();
            (names.len() < trees.len() && names.iter().all(|n| trees.contains_key(n)))
                .then_some(names)
        });
        let placements = match (&params.only, own) {
            (None, Some(names)) => {
                let selected: BTreeMap<String, Option<String>> = trees
                    .into_iter()
                    .filter(|(name, _)| names.contains(name))
                    .collect();
                plan_restore(&selected, &target, None)?
            }
            _ => plan_restore(&trees, &target, params.only.as_deref())?,
        };

        // Check every destination before restoring anything.
        if !params.overwrite {
            for p in &placements {
                paths::check_listing(&p.dest, paths::list_dir(&p.dest))?;
            }
        }

        let total = placements.len() as u64;
        progress::report(0, total, Unit::Items);
        let mut artifacts = Vec::with_capacity(placements.len());
        let mut bytes = 0u64;
        for (done, p) in (1..).zip(&placements) {
            let artifact = storage::restore_tree(&p.name, &p.dest, params.overwrite)
                .with_context(|| format!("restoring `{}` into {}", p.name, p.dest))?;
            log::info_with(
                format!(
                    "restored `{}` into {} ({})",
                    p.name,
                    p.dest,
                    cairn_guest::format_size(artifact.size)
                ),
                &[("artifact", &p.name), ("bytes", &artifact.size)],
            );
            progress::report(done, total, Unit::Items);
            bytes = bytes.saturating_add(artifact.size);
            artifacts.push(json!({
                "name": p.name,
                "path": p.path,
                "target": p.dest,
                "size": artifact.size,
            }));
        }
        Ok(json!({ "artifacts": artifacts, "bytes": bytes }))
    }
}

cairn_guest::export_task!(DirectoryTask);

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_guest::{ErrorKind, from_params};

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn trees(items: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        items
            .iter()
            .map(|(n, p)| ((*n).to_owned(), p.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn params_take_paths_and_restore_options() {
        let p: Params = from_params(json!({
            "paths": ["/srv/data"], "target": "/srv/restore", "overwrite": true, "only": ["srv-data"]
        }))
        .unwrap();
        assert_eq!(p.paths, ["/srv/data"]);
        assert_eq!(p.target.as_deref(), Some("/srv/restore"));
        assert!(p.overwrite);
        let p: Params = from_params(json!({"paths": ["/a"]})).unwrap();
        assert!(!p.overwrite && p.target.is_none() && p.only.is_none());
        let err = from_params::<Params>(json!({"path": ["/a"]})).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains("unknown field `path`"), "{err}");
    }

    #[test]
    fn paths_are_normalized_and_must_be_absolute() {
        assert_eq!(
            normalize_path("paths", "/srv//data/./").unwrap(),
            "/srv/data"
        );
        assert_eq!(normalize_path("paths", "/").unwrap(), "/");
        let err = normalize_path("paths", "srv/data").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(
            err.to_string(),
            "invalid params: \"srv/data\" in `paths` is not an absolute path"
        );
        let err = normalize_path("target", "/srv/../etc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid params: \"/srv/../etc\" in `target` contains `..`; write the path without it"
        );
        assert_eq!(
            normalize_path("paths", "/a\0b").unwrap_err().to_string(),
            "invalid params: \"/a\\0b\" in `paths` contains a NUL byte"
        );
    }

    #[test]
    fn backup_plan_names_each_path() {
        let plan = plan_backup(&strings(&["/srv/data/", "/etc/app"])).unwrap();
        assert_eq!(
            plan,
            [
                Entry {
                    name: "srv-data".into(),
                    path: "/srv/data".into()
                },
                Entry {
                    name: "etc-app".into(),
                    path: "/etc/app".into()
                },
            ]
        );
    }

    #[test]
    fn backup_plan_refuses_name_collisions() {
        let err = plan_backup(&strings(&["/srv/a-b", "/srv/a/b"])).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(
            err.to_string(),
            "invalid params: /srv/a-b and /srv/a/b would both be stored as artifact `srv-a-b`; \
             back up a common parent directory instead, or use one job for each"
        );
        assert!(plan_backup(&strings(&["/srv/my data", "/srv/my_data"])).is_err());
    }

    #[test]
    fn backup_plan_refuses_duplicates_nesting_and_empty_lists() {
        let err = plan_backup(&strings(&["/srv/data", "/srv/data/"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid params: `paths` lists /srv/data twice"
        );
        for paths in [["/srv", "/srv/data"], ["/srv/data", "/srv"]] {
            let err = plan_backup(&strings(&paths)).unwrap_err();
            assert_eq!(
                err.to_string(),
                "invalid params: `paths` lists /srv/data, which lies inside /srv, also listed; \
                 it would be stored twice, so list only /srv"
            );
        }
        assert!(plan_backup(&strings(&["/", "/srv"])).is_err());
        // A shared prefix is not nesting.
        assert!(plan_backup(&strings(&["/srv/data", "/srv/data2"])).is_ok());
        let err = plan_backup(&[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        let long = format!("/{}", "x".repeat(300));
        assert!(
            plan_backup(&[long])
                .unwrap_err()
                .to_string()
                .contains("longer than 255 bytes")
        );
    }

    #[test]
    fn one_tree_restores_straight_into_target() {
        let t = trees(&[("srv-data", Some("/srv/data"))]);
        let plan = plan_restore(&t, "/srv/restore", None).unwrap();
        assert_eq!(
            plan,
            [Placement {
                name: "srv-data".into(),
                path: Some("/srv/data".into()),
                dest: "/srv/restore".into()
            }]
        );
    }

    #[test]
    fn several_trees_restore_into_subdirectories_even_with_only() {
        let t = trees(&[
            ("etc-app", Some("/etc/app")),
            ("srv-data", Some("/srv/data")),
        ]);
        let plan = plan_restore(&t, "/srv/restore", None).unwrap();
        let dests: Vec<&str> = plan.iter().map(|p| p.dest.as_str()).collect();
        assert_eq!(dests, ["/srv/restore/etc-app", "/srv/restore/srv-data"]);

        let only = strings(&["srv-data"]);
        let plan = plan_restore(&t, "/", Some(&only)).unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].dest, "/srv-data");

        // By original path, too, normalized.
        let only = strings(&["/etc/app/"]);
        let plan = plan_restore(&t, "/srv/restore", Some(&only)).unwrap();
        assert_eq!(plan[0].name, "etc-app");
    }

    #[test]
    fn restore_plan_reports_unknown_names_and_empty_snapshots() {
        let t = trees(&[("etc-app", Some("/etc/app")), ("uploads", None)]);
        let only = strings(&["srv-data"]);
        let err = plan_restore(&t, "/r", Some(&only)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "`only` names \"srv-data\", but the snapshot holds no such directory; \
             it holds `etc-app` (/etc/app), `uploads`"
        );
        assert_eq!(
            plan_restore(&t, "/r", Some(&[])).unwrap_err().kind(),
            ErrorKind::Invalid
        );
        assert_eq!(
            plan_restore(&BTreeMap::new(), "/r", None)
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn paths_note_round_trips() {
        let t = parse_paths_note(r#"{"srv-data": "/srv/data"}"#).unwrap();
        assert_eq!(t, trees(&[("srv-data", Some("/srv/data"))]));
        let err = parse_paths_note("[1]").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the snapshot's note `paths` is not a JSON object"),
            "{err}"
        );
    }

    #[test]
    fn describe_declares_params_and_needs() {
        let d = DirectoryTask::describe();
        assert_eq!(d.name(), "directory");
        let names: Vec<&str> = d.params().iter().map(Param::name).collect();
        assert_eq!(names, ["paths", "target", "overwrite", "only"]);
        assert!(d.params()[0].is_required());
    }
}
