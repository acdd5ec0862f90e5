//! `archive-path`: a Function that adds a granted directory (or file) to
//! the run's snapshot as a tree artifact: a restic tree with contents, modes,
//! times and symlinks, read by the host (the bytes never pass through the
//! module). `restore-path` brings it back.
//!
//! # Params
//!
//! - `path` (required): the absolute path, granted in `allow.paths` (`read`
//!   is enough).
//! - `artifact` (optional): the artifact's name, unique in the snapshot.
//!   Default: the path's components joined by `-`, characters outside
//!   `[A-Za-z0-9._-]` and a leading `.` replaced by `_` (`/srv/data` →
//!   `srv-data`, `/` → `root`), as `builtin:directory` names its trees.
//!
//! The whole tree is stored: the storage capability has no exclude
//! patterns, so point `path` at what should be kept.
//!
//! # Result
//!
//! `{"artifact": "srv-data", "path": "/srv/data", "bytes": 1048576,
//! "files": 12}`. `bytes` is the sum of the file sizes the host stored;
//! `files` counts regular files (and symlinks) as the module sees them
//! through its view of the granted paths (`null` if it cannot see them).

use std::io;
use std::path::Path;

use cairn_guest::{
    Description, Error, ErrorContext, Function, Param, Result, Value, from_params, json, log,
    paths, storage,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    path: String,
    #[serde(default)]
    artifact: Option<String>,
}

/// `raw` as a clean absolute path; `..` is refused.
fn normalize_path(raw: &str) -> Result<String> {
    paths::normalize(raw, &format!("`path` {raw:?}"))
}

/// Files (and symlinks) under `path`, not following symlinks.
fn count_files(path: &Path) -> io::Result<u64> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(1);
    }
    let mut count = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                count += 1;
            }
        }
    }
    Ok(count)
}

struct ArchivePath;

impl Function for ArchivePath {
    fn describe() -> Description {
        Description::new("archive-path", env!("CARGO_PKG_VERSION"))
            .summary("Adds a granted directory or file to the run's snapshot as a tree artifact")
            .param(Param::required(
                "path",
                "Absolute path of the directory or file, granted in allow.paths",
            ))
            .param(Param::optional(
                "artifact",
                "Artifact name (default: from the path, /srv/data -> srv-data)",
                None,
            ))
            .needs_path("{path}")
    }

    fn call(params: Value) -> Result<Value> {
        let params: Params = from_params(params)?;
        let path = normalize_path(&params.path)?;
        let name = match params.artifact {
            Some(name) if name.trim().is_empty() => {
                return Err(Error::invalid(
                    "invalid params: `artifact` is empty; leave it out to name the artifact \
                     after the path",
                ));
            }
            Some(name) => name,
            None => paths::artifact_name(&path),
        };
        let artifact = storage::add_tree(&name, &path)
            .with_context(|| format!("archiving {path} as `{name}`"))?;
        let files = match count_files(Path::new(&path)) {
            Ok(n) => Some(n),
            Err(e) => {
                log::debug(format!("cannot count the files under {path}: {e}"));
                None
            }
        };
        log::info_with(
            format!(
                "archived {path} as `{name}` ({})",
                cairn_guest::format_size(artifact.size)
            ),
            &[("artifact", &name), ("bytes", &artifact.size)],
        );
        Ok(json!({
            "artifact": artifact.name,
            "path": path,
            "bytes": artifact.size,
            "files": files,
        }))
    }
}

cairn_guest::export_function!(ArchivePath);

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_guest::ErrorKind;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize_path("/srv//data/./").unwrap(), "/srv/data");
        assert_eq!(normalize_path("/").unwrap(), "/");
        for bad in ["srv/data", "/srv/../etc", "/a\0b"] {
            assert_eq!(
                normalize_path(bad).unwrap_err().kind(),
                ErrorKind::Invalid,
                "{bad}"
            );
        }
        assert_eq!(
            normalize_path("srv").unwrap_err().to_string(),
            "invalid params: `path` \"srv\" is not an absolute path"
        );
    }

    #[test]
    fn files_are_counted_without_following_links() {
        let dir = std::env::temp_dir().join(format!("archive-path-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("one"), b"1").unwrap();
        std::fs::write(dir.join("a/b/two"), b"2").unwrap();
        // A link to a directory counts as one entry; it is not followed.
        #[cfg(unix)]
        std::os::unix::fs::symlink("/", dir.join("a/link")).unwrap();
        #[cfg(not(unix))]
        std::fs::write(dir.join("a/link"), b"").unwrap();
        assert_eq!(count_files(&dir).unwrap(), 3);
        assert_eq!(count_files(&dir.join("one")).unwrap(), 1);
        assert!(count_files(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
