//! Facts about the machine and the process environment that several modules
//! need: the host name, the time, where caches go, lexical path handling.
//! One implementation of each; nothing here depends on the rest of the crate.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// This machine's host name (`localhost` when it has none).
#[must_use]
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success (or truncates, which the search for NUL handles).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => "localhost".to_owned(),
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
#[must_use]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The compile cache's default directory: `$XDG_CACHE_HOME/cairn`, else
/// `$HOME/.cache/cairn`, else `<base_dir>/.cairn/cache` (relative or empty
/// variables are ignored).
#[must_use]
pub fn default_cache_dir(
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
    base_dir: &Path,
) -> PathBuf {
    let absolute = |dir: Option<OsString>| dir.map(PathBuf::from).filter(|d| d.is_absolute());
    if let Some(xdg) = absolute(xdg_cache_home) {
        xdg.join("cairn")
    } else if let Some(home) = absolute(home) {
        home.join(".cache").join("cairn")
    } else {
        base_dir.join(".cairn").join("cache")
    }
}

/// [`default_cache_dir`] for this process's environment, with relative
/// fallbacks resolved against the current directory.
#[must_use]
pub fn default_cache_dir_here() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    default_cache_dir(
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
        &cwd,
    )
}

/// Where the key that authenticates the compile cache's entries is kept:
/// beside the cache directory, not in it (`~/.cache/cairn.key` for
/// `~/.cache/cairn`).
#[must_use]
pub fn cache_key_path(cache_dir: &Path) -> PathBuf {
    let name = cache_dir
        .file_name()
        .map_or_else(|| OsString::from("cairn"), ToOwned::to_owned);
    let mut key = name;
    key.push(".key");
    cache_dir.with_file_name(key)
}

/// `path` with symlinks resolved as far as it exists: the canonical form of
/// its deepest existing ancestor, joined with the rest.
#[must_use]
pub fn canonical_lossy(path: &Path) -> PathBuf {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        return canonical;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if parent != path => canonical_lossy(parent).join(name),
        _ => path.to_path_buf(),
    }
}

/// Remove `.` and resolve `..` lexically (no filesystem access): `/a/./b/../c`
/// is `/a/c`, and `/..` is `/`.
#[must_use]
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `path` made absolute against the current directory, then normalized.
#[must_use]
pub fn absolutize(path: &Path) -> PathBuf {
    if path.is_absolute() {
        normalize(path)
    } else {
        let cwd = std::env::current_dir().unwrap_or_default();
        normalize(&cwd.join(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), Path::new("/a/c"));
        assert_eq!(normalize(Path::new("/../x")), Path::new("/x"));
        assert_eq!(normalize(Path::new("a/../..")), Path::new(".."));
        assert_eq!(normalize(Path::new("")), Path::new("."));
    }

    #[test]
    fn cache_dir_prefers_xdg_then_home_then_the_base_directory() {
        let base = Path::new("/srv/cairn");
        assert_eq!(
            default_cache_dir(Some("/x".into()), Some("/home/u".into()), base),
            Path::new("/x/cairn")
        );
        assert_eq!(
            default_cache_dir(Some("rel".into()), Some("/home/u".into()), base),
            Path::new("/home/u/.cache/cairn")
        );
        assert_eq!(
            default_cache_dir(None, None, base),
            Path::new("/srv/cairn/.cairn/cache")
        );
    }

    #[test]
    fn the_host_has_a_name() {
        assert!(!hostname().is_empty());
    }
}
