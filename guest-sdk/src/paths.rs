//! Helpers for modules that take filesystem paths as params and store or
//! restore them as artifacts: normalizing an absolute path, deriving an
//! artifact name from it, and checking that a restore target is empty.
//!
//! The built-in `directory`, `archive-path` and `restore-path` modules share
//! these, so the same path gets the same artifact name and the same checks
//! whichever of them handles it.

use std::io;

use crate::{Error, Result};

/// How many entries of a non-empty restore target [`check_listing`] names.
pub const SHOWN_ENTRIES: usize = 3;

/// `raw` as a clean absolute path: no empty or `.` components, no trailing
/// `/`. `..` is refused rather than resolved, since what it means depends on
/// symlinks the module may not see.
///
/// `subject` names the value in errors, e.g. ``"`path` \"/srv/../x\""``; the
/// messages read `invalid params: <subject> is not an absolute path` (and
/// likewise `contains a NUL byte`, `contains `..`; write the path without
/// it`).
///
/// ```
/// use cairn_guest::paths::normalize;
///
/// assert_eq!(normalize("/srv//data/./", "`path`").unwrap(), "/srv/data");
/// assert_eq!(normalize("/", "`path`").unwrap(), "/");
/// let err = normalize("srv/data", "`path`").unwrap_err();
/// assert_eq!(err.to_string(), "invalid params: `path` is not an absolute path");
/// ```
///
/// # Errors
///
/// [`Invalid`](crate::ErrorKind::Invalid) for a relative path, a NUL byte or
/// a `..` component.
pub fn normalize(raw: &str, subject: &str) -> Result<String> {
    if raw.contains('\0') {
        return Err(Error::invalid(format!(
            "invalid params: {subject} contains a NUL byte"
        )));
    }
    if !raw.starts_with('/') {
        return Err(Error::invalid(format!(
            "invalid params: {subject} is not an absolute path"
        )));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::invalid(format!(
                    "invalid params: {subject} contains `..`; write the path without it"
                )));
            }
            part => parts.push(part),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// `text` with characters outside `[A-Za-z0-9._-]` replaced by `_`, and a
/// leading `.` replaced by `_`: safe as (part of) an artifact name.
///
/// ```
/// assert_eq!(cairn_guest::paths::sanitize_name(".my db/ü"), "_my_db__");
/// ```
pub fn sanitize_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with('.') {
        name.replace_range(..1, "_");
    }
    name
}

/// The artifact name of the normalized absolute `path`: its components
/// joined by `-`, then [`sanitize_name`]d; `/` is `root`.
///
/// ```
/// use cairn_guest::paths::artifact_name;
///
/// assert_eq!(artifact_name("/srv/data"), "srv-data");
/// assert_eq!(artifact_name("/"), "root");
/// ```
pub fn artifact_name(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return "root".to_owned();
    }
    sanitize_name(&parts.join("-"))
}

/// Check that restoring into `dest` overwrites nothing, given what listing
/// it gave ([`list_dir`]): its first few entry names, or the error.
///
/// A missing `dest` passes: the host creates it (or, since WASI cannot tell
/// a missing path from one outside every grant, refuses an ungranted one).
///
/// # Errors
///
/// [`Invalid`](crate::ErrorKind::Invalid) for a non-empty directory (naming
/// up to [`SHOWN_ENTRIES`] entries and the `overwrite` param) or a
/// non-directory, [`Denied`](crate::ErrorKind::Denied) if it cannot be
/// listed for lack of a grant, [`Failed`](crate::ErrorKind::Failed)
/// otherwise.
pub fn check_listing(dest: &str, listing: io::Result<Vec<String>>) -> Result<()> {
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

/// The first entries of directory `dest`: one more than [`check_listing`]
/// shows, so it can tell there are more.
///
/// # Errors
///
/// The error of reading the directory.
pub fn list_dir(dest: &str) -> io::Result<Vec<String>> {
    std::fs::read_dir(dest)?
        .take(SHOWN_ENTRIES + 1)
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn paths_are_normalized_and_must_be_absolute() {
        assert_eq!(normalize("/srv//data/./", "p").unwrap(), "/srv/data");
        assert_eq!(normalize("/", "p").unwrap(), "/");
        let err = normalize("srv/data", "`path` \"srv/data\"").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(
            err.to_string(),
            "invalid params: `path` \"srv/data\" is not an absolute path"
        );
        let err = normalize("/srv/../etc", "x").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(
            err.to_string(),
            "invalid params: x contains `..`; write the path without it"
        );
        let err = normalize("/a\0b", "x").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(err.to_string(), "invalid params: x contains a NUL byte");
    }

    #[test]
    fn artifact_names_derive_from_paths() {
        assert_eq!(artifact_name("/srv/data"), "srv-data");
        assert_eq!(artifact_name("/home/me/.config"), "home-me-.config");
        assert_eq!(artifact_name("/.snapshots"), "_snapshots");
        assert_eq!(artifact_name("/.x/y z"), "_x-y_z");
        assert_eq!(artifact_name("/srv/my data/ünï"), "srv-my_data-_n_");
        assert_eq!(artifact_name("/var/lib/app_v1.2"), "var-lib-app_v1.2");
        assert_eq!(artifact_name("/"), "root");
        assert_eq!(sanitize_name("shop"), "shop");
        assert_eq!(sanitize_name(".hidden"), "_hidden");
        assert_eq!(sanitize_name("a..b"), "a..b");
    }

    #[test]
    fn non_empty_targets_are_refused() {
        assert!(check_listing("/r", Ok(vec![])).is_ok());
        let err = check_listing("/r", Ok(strings(&["a", "b"]))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(
            err.to_string(),
            "restore target /r is not empty (it holds `a`, `b`); restore into an empty or new \
             directory, or set param `overwrite = true` to restore over its contents"
        );
        let err = check_listing("/r", Ok(strings(&["a", "b", "c", "d"]))).unwrap_err();
        assert!(
            err.to_string().contains("(it holds `a`, `b`, `c`, …)"),
            "{err}"
        );
    }

    #[test]
    fn listing_errors_are_classified() {
        let missing = io::Error::from(io::ErrorKind::NotFound);
        assert!(check_listing("/r", Err(missing)).is_ok());
        let file = io::Error::from(io::ErrorKind::NotADirectory);
        let err = check_listing("/r", Err(file)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert_eq!(
            err.to_string(),
            "restore target /r exists and is not a directory"
        );
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let err = check_listing("/r", Err(denied)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Denied);
        assert!(err.to_string().contains("`allow.paths`"), "{err}");
        let other = io::Error::other("disk on fire");
        assert_eq!(
            check_listing("/r", Err(other)).unwrap_err().kind(),
            ErrorKind::Failed
        );
    }

    #[test]
    fn list_dir_sees_real_directories() {
        let dir = std::env::temp_dir().join(format!("cairn-guest-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.to_str().unwrap();
        assert!(check_listing(d, list_dir(d)).is_ok());
        for n in 0..6 {
            std::fs::write(dir.join(format!("f{n}")), b"x").unwrap();
        }
        assert_eq!(list_dir(d).unwrap().len(), SHOWN_ENTRIES + 1);
        let err = check_listing(d, list_dir(d)).unwrap_err();
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
}
