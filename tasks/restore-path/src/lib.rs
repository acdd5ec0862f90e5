//! `restore-path`: a Function that restores a tree artifact of the snapshot
//! being restored (written by `archive-path` or `builtin:directory`) into a
//! granted directory. The host writes the files; the bytes never pass through
//! the module.
//!
//! # Params
//!
//! - `artifact` (required): the tree artifact's name.
//! - `path` (required): the absolute directory to restore into, granted
//!   `read-write` in `allow.paths`; created if missing. The tree's contents
//!   become its contents.
//! - `overwrite` (default `false`): restore into a directory that is not
//!   empty. Without it a non-empty `path` is refused before anything is
//!   written, naming a few of its entries (as `builtin:directory` does).
//!
//! # Result
//!
//! `{"artifact": "srv-data", "path": "/srv/restore", "bytes": 1048576}`.
//!
//! # Errors
//!
//! `not-found` for an artifact the snapshot does not hold (naming the trees
//! it does hold), `invalid` for a stream artifact or a non-empty target,
//! `denied` for a path not granted read-write, `unsupported` in a backup run.

use std::io;

use cairn_guest::storage::{self, Artifact, ArtifactKind};
use cairn_guest::{
    Description, Error, ErrorContext, Function, Param, Result, Value, from_params, json, log,
};
use serde::Deserialize;

/// How many entries of a non-empty target an error names.
const SHOWN_ENTRIES: usize = 3;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    artifact: String,
    path: String,
    #[serde(default)]
    overwrite: bool,
}

/// `raw` as a clean absolute path; `..` is refused.
fn normalize_path(raw: &str) -> Result<String> {
    if raw.contains('\0') || !raw.starts_with('/') {
        return Err(Error::invalid(format!(
            "invalid params: `path` {raw:?} is not an absolute path"
        )));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::invalid(format!(
                    "invalid params: `path` {raw:?} contains `..`; write the path without it"
                )));
            }
            part => parts.push(part),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Check that `name` is a tree artifact among `held`.
fn check_tree_present(name: &str, held: &[Artifact]) -> Result<()> {
    match held.iter().find(|a| a.name == name) {
        Some(a) if a.kind == ArtifactKind::Tree => Ok(()),
        Some(_) => Err(Error::invalid(format!(
            "artifact `{name}` is a stream, not a directory tree; restore it with the function \
             `command` and `from-artifact`"
        ))),
        None => {
            let trees: Vec<String> = held
                .iter()
                .filter(|a| a.kind == ArtifactKind::Tree)
                .map(|a| format!("`{}`", a.name))
                .collect();
            let trees = if trees.is_empty() {
                "no trees".to_owned()
            } else {
                trees.join(", ")
            };
            Err(Error::not_found(format!(
                "the snapshot holds no tree artifact `{name}` (it holds {trees})"
            )))
        }
    }
}

/// Check that restoring into `dest` overwrites nothing, given what listing
/// it gave: its first few entry names, or the error.
fn check_listing(dest: &str, listing: io::Result<Vec<String>>) -> Result<()> {
    match listing {
        Ok(entries) if entries.is_empty() => Ok(()),
        Ok(entries) => {
            let mut shown: Vec<String> = entries
                .iter()
                .take(SHOWN_ENTRIES)
                .map(|e| format!("`{e}`"))
                .collect();
            if entries.len() > SHOWN_ENTRIES {
                shown.push("…".to_owned());
            }
            Err(Error::invalid(format!(
                "restore target {dest} is not empty (it holds {}); restore into an empty or new \
                 directory, or set param `overwrite = true` to restore over its contents",
                shown.join(", ")
            )))
        }
        // Missing, or outside every granted path (WASI cannot tell them
        // apart): the host creates it, or refuses an ungranted target.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(Error::invalid(format!(
            "restore target {dest} exists and is not a directory"
        ))),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(Error::denied(format!(
            "cannot list restore target {dest} to check that it is empty ({e}); grant it \
             read-write in `allow.paths`, or set param `overwrite = true` to skip the check"
        ))),
        Err(e) => Err(Error::failed(format!(
            "cannot list restore target {dest} to check that it is empty: {e}"
        ))),
    }
}

/// The first entries of directory `dest` (one more than an error shows).
fn list_dir(dest: &str) -> io::Result<Vec<String>> {
    std::fs::read_dir(dest)?
        .take(SHOWN_ENTRIES + 1)
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect()
}

struct RestorePath;

impl Function for RestorePath {
    fn describe() -> Description {
        Description::new("restore-path", env!("CARGO_PKG_VERSION"))
            .summary("Restores a tree artifact of the snapshot into a granted directory")
            .param(Param::required("artifact", "Name of the tree artifact"))
            .param(Param::required(
                "path",
                "Absolute directory to restore into, granted read-write; created if missing",
            ))
            .param(Param::optional(
                "overwrite",
                "Restore into a directory that is not empty (otherwise refused)",
                json!(false),
            ))
            .needs_path("{path}")
    }

    fn call(params: Value) -> Result<Value> {
        let params: Params = from_params(params)?;
        let path = normalize_path(&params.path)?;
        let name = params.artifact;
        check_tree_present(&name, &storage::list()?)?;
        if !params.overwrite {
            check_listing(&path, list_dir(&path))?;
        }
        let artifact = storage::restore_tree(&name, &path)
            .with_context(|| format!("restoring `{name}` into {path}"))?;
        log::info_with(
            format!(
                "restored `{name}` into {path} ({})",
                cairn_guest::format_size(artifact.size)
            ),
            &[("artifact", &name), ("bytes", &artifact.size)],
        );
        Ok(json!({
            "artifact": artifact.name,
            "path": path,
            "bytes": artifact.size,
        }))
    }
}

cairn_guest::export_function!(RestorePath);

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_guest::ErrorKind;

    fn artifact(name: &str, kind: ArtifactKind) -> Artifact {
        Artifact {
            name: name.to_owned(),
            kind,
            size: 1,
        }
    }

    #[test]
    fn the_artifact_must_be_a_tree_of_the_snapshot() {
        let held = [
            artifact("db.sql", ArtifactKind::Stream),
            artifact("srv-data", ArtifactKind::Tree),
        ];
        assert!(check_tree_present("srv-data", &held).is_ok());
        let err = check_tree_present("db.sql", &held).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        let err = check_tree_present("etc", &held).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(
            err.to_string(),
            "the snapshot holds no tree artifact `etc` (it holds `srv-data`)"
        );
        assert!(
            check_tree_present("x", &[])
                .unwrap_err()
                .to_string()
                .contains("(it holds no trees)")
        );
    }

    #[test]
    fn a_non_empty_target_is_refused() {
        let dir = std::env::temp_dir().join(format!("restore-path-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.to_str().unwrap();
        assert!(check_listing(d, list_dir(d)).is_ok());
        for n in 0..5 {
            std::fs::write(dir.join(format!("f{n}")), b"x").unwrap();
        }
        let err = check_listing(d, list_dir(d)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.to_string().contains("overwrite = true"), "{err}");
        assert!(err.to_string().contains(", …)"), "{err}");
        let missing = format!("{d}/missing");
        assert!(check_listing(&missing, list_dir(&missing)).is_ok());
        let file = format!("{d}/f0");
        assert_eq!(
            check_listing(&file, list_dir(&file)).unwrap_err().kind(),
            ErrorKind::Invalid
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_must_be_absolute_without_dot_dot() {
        assert_eq!(normalize_path("/srv//r/").unwrap(), "/srv/r");
        assert!(normalize_path("srv").is_err());
        assert!(normalize_path("/srv/../etc").is_err());
    }
}
