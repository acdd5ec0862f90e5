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

use cairn_guest::storage::{self, Artifact, ArtifactKind};
use cairn_guest::{
    Description, Error, ErrorContext, Function, Param, Result, Value, from_params, json, log, paths,
};
use serde::Deserialize;

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
    paths::normalize(raw, &format!("`path` {raw:?}"))
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
            paths::check_listing(&path, paths::list_dir(&path))?;
        }
        let artifact = storage::restore_tree(&name, &path, params.overwrite)
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
    fn paths_must_be_absolute_without_dot_dot() {
        assert_eq!(normalize_path("/srv//r/").unwrap(), "/srv/r");
        assert!(normalize_path("srv").is_err());
        assert!(normalize_path("/srv/../etc").is_err());
    }
}
