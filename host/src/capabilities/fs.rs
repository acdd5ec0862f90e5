//! Host-side file access on behalf of a module, beneath its path grants.
//!
//! Every path a module names (a tree to archive, a restore target, a
//! command's working directory) is normalised lexically, matched to the grant
//! it lies in, and then opened one component at a time from the grant's
//! directory with `openat(…, O_NOFOLLOW)`: a symlink anywhere below the grant
//! is refused, so the check and the use are one operation and no `..` or
//! symlink can slip between them (the component walk is what
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` does in one call; the walk
//! also creates missing directories of a restore target). The grant's own
//! path was resolved by the operator's configuration and is trusted.
//!
//! A restore never writes through a symlink: the repository restores into a
//! fresh directory the host creates inside the target ([`Staging`]), and its
//! entries are then moved into place with `renameat`, relative to directory
//! handles opened without following symlinks ([`merge`]).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::model::Access;
use crate::sys::normalize;

/// Why a path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The path is malformed (relative, not UTF-8 …).
    #[error("{0}")]
    Invalid(String),
    /// No grant with the access needed covers the path.
    #[error(
        "{} access to {} is not granted to job `{job}`: `allow.paths` {granted}",
        .need.as_str(),
        .path.display()
    )]
    NotGranted {
        /// The access needed.
        need: Access,
        /// The path asked for (normalised).
        path: PathBuf,
        /// The job.
        job: String,
        /// What the job grants, as a phrase.
        granted: String,
    },
    /// A component of the path is a symlink.
    #[error(
        "{} is a symlink (or goes through one at {}): the host does not follow symlinks in granted paths; use the path it points to",
        .path.display(),
        .at.display()
    )]
    Symlink {
        /// The path asked for.
        path: PathBuf,
        /// The component that is a symlink.
        at: PathBuf,
    },
    /// The path, or a directory on the way, does not exist.
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    /// A component on the way is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// A restore target has entries and the call did not say `overwrite`.
    #[error(
        "restore target {} is not empty (it holds {}); restore into an empty or new directory, or set param `overwrite = true` to restore over its contents",
        .path.display(),
        .entries
    )]
    NotEmpty {
        /// The target.
        path: PathBuf,
        /// The first entries, comma-separated.
        entries: String,
    },
    /// The file system refused an operation.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

impl From<FsError> for super::WitError {
    fn from(e: FsError) -> Self {
        match e {
            FsError::NotGranted { .. } | FsError::Symlink { .. } => Self::Denied(e.to_string()),
            FsError::NotFound(_) => Self::NotFound(e.to_string()),
            FsError::Invalid(_) | FsError::NotADirectory(_) | FsError::NotEmpty { .. } => {
                Self::Invalid(e.to_string())
            }
            FsError::Io { .. } => Self::Failed(e.to_string()),
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(Errno) -> FsError {
    let what = what.into();
    move |e| FsError::Io {
        what,
        source: e.into(),
    }
}

/// A path opened beneath its grant: where it is, and a handle on it.
#[derive(Debug)]
pub struct Resolved {
    /// The absolute, normalised path (no symlink in it when it was opened).
    pub path: PathBuf,
    /// The object itself: a directory opened for reading, or a file opened
    /// with `O_PATH`.
    pub fd: OwnedFd,
    /// Its type.
    pub kind: FileType,
}

/// The path grants of one job, for host-side access.
pub struct Beneath<'a> {
    /// Granted directories (absolute) and their access.
    pub grants: &'a BTreeMap<PathBuf, Access>,
    /// The job, for messages.
    pub job: &'a str,
}

impl Beneath<'_> {
    /// The grant covering `path` with `need` access (the longest such), and
    /// the path relative to it.
    fn grant_of(&self, path: &str, need: Access) -> Result<(PathBuf, PathBuf, PathBuf), FsError> {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(FsError::Invalid(format!("path `{path}` must be absolute")));
        }
        if path.as_bytes().contains(&0) {
            return Err(FsError::Invalid(format!(
                "path `{}` contains a NUL byte",
                path.escape_debug()
            )));
        }
        let normal = normalize(p);
        let grant = self
            .grants
            .iter()
            .filter(|(granted, access)| normal.starts_with(granted) && access.covers(need))
            .max_by_key(|(granted, _)| granted.as_os_str().len());
        let Some((grant, _)) = grant else {
            let granted = self
                .grants
                .iter()
                .map(|(p, a)| format!("{} ({})", p.display(), a.as_str()));
            return Err(FsError::NotGranted {
                need,
                path: normal,
                job: self.job.to_owned(),
                granted: super::grants_phrase(granted),
            });
        };
        let rel = normal
            .strip_prefix(grant)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Ok((grant.clone(), rel, normal))
    }

    /// Open what `path` names (a directory, file or other object, but not a
    /// symlink) beneath the grant that gives it `need` access.
    ///
    /// # Errors
    /// Not granted, a symlink on the way, missing, or unreadable.
    pub fn open(&self, path: &str, need: Access) -> Result<Resolved, FsError> {
        let (grant, rel, normal) = self.grant_of(path, need)?;
        let mut dir = open_grant(&grant)?;
        let components = components(&rel);
        let Some((last, parents)) = components.split_last() else {
            let kind = FileType::Directory;
            return Ok(Resolved {
                path: normal,
                fd: dir,
                kind,
            });
        };
        let mut at = grant.clone();
        for name in parents {
            at.push(name);
            dir = open_dir_at(&dir, name, &at, &normal)?;
        }
        at.push(last);
        let fd = rustix::fs::openat(
            &dir,
            last.as_os_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| not_found_or(e, &at, &normal))?;
        let kind = FileType::from_raw_mode(
            rustix::fs::fstat(&fd)
                .map_err(io(format!("inspecting {}", at.display())))?
                .st_mode,
        );
        match kind {
            FileType::Symlink => Err(FsError::Symlink { path: normal, at }),
            FileType::Directory => Ok(Resolved {
                path: normal,
                fd: open_dir_at(&dir, last, &at, &at)?,
                kind,
            }),
            _ => Ok(Resolved {
                path: normal,
                fd,
                kind,
            }),
        }
    }

    /// Open directory `path` beneath the grant that gives it `need` access,
    /// creating it and missing parents (mode 0755) when `create`.
    ///
    /// # Errors
    /// Not granted, a symlink or non-directory on the way, missing (and not
    /// `create`), or the file system refusing.
    pub fn directory(&self, path: &str, need: Access, create: bool) -> Result<Resolved, FsError> {
        let (grant, rel, normal) = self.grant_of(path, need)?;
        let mut dir = match open_grant(&grant) {
            // The granted directory itself is the operator's path: made as
            // written when a restore needs it.
            Err(FsError::NotFound(_)) if create => {
                std::fs::create_dir_all(&grant).map_err(|source| FsError::Io {
                    what: format!("creating granted directory {}", grant.display()),
                    source,
                })?;
                open_grant(&grant)?
            }
            other => other?,
        };
        let mut at = grant.clone();
        for name in components(&rel) {
            at.push(&name);
            dir = match open_dir_at(&dir, &name, &at, &normal) {
                Err(FsError::NotFound(_)) if create => {
                    match rustix::fs::mkdirat(&dir, name.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io(format!("creating {}", at.display()))(e)),
                    }
                    open_dir_at(&dir, &name, &at, &normal)?
                }
                other => other?,
            };
        }
        Ok(Resolved {
            path: normal,
            fd: dir,
            kind: FileType::Directory,
        })
    }
}

/// The normal components of a relative path.
fn components(rel: &Path) -> Vec<OsString> {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            _ => None,
        })
        .collect()
}

/// Open a grant's directory (its own path is the operator's, trusted).
fn open_grant(grant: &Path) -> Result<OwnedFd, FsError> {
    rustix::fs::open(
        grant,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::NOENT => FsError::NotFound(grant.to_path_buf()),
        Errno::NOTDIR => FsError::NotADirectory(grant.to_path_buf()),
        e => io(format!("opening granted directory {}", grant.display()))(e),
    })
}

/// Open directory `name` in `dir` without following a symlink. `at` is its
/// path, `asked` the path the module asked for (for messages).
fn open_dir_at(dir: &OwnedFd, name: &OsStr, at: &Path, asked: &Path) -> Result<OwnedFd, FsError> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // O_NOFOLLOW on a symlink: ELOOP; O_DIRECTORY on a symlink: ENOTDIR.
        Errno::LOOP | Errno::NOTDIR => {
            match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    FsError::Symlink {
                        path: asked.to_path_buf(),
                        at: at.to_path_buf(),
                    }
                }
                _ => FsError::NotADirectory(at.to_path_buf()),
            }
        }
        e => not_found_or(e, at, asked),
    })
}

fn not_found_or(e: Errno, at: &Path, asked: &Path) -> FsError {
    match e {
        Errno::NOENT => FsError::NotFound(asked.to_path_buf()),
        Errno::LOOP => FsError::Symlink {
            path: asked.to_path_buf(),
            at: at.to_path_buf(),
        },
        e => io(format!("opening {}", at.display()))(e),
    }
}

/// The names in directory `dir` (without `.` and `..`), sorted.
///
/// # Errors
/// When the directory cannot be read.
pub fn entries(dir: &OwnedFd, what: &Path) -> Result<Vec<OsString>, FsError> {
    let mut out = Vec::new();
    let reading = || format!("reading {}", what.display());
    for entry in rustix::fs::Dir::read_from(dir).map_err(io(reading()))? {
        let entry = entry.map_err(io(reading()))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Refuse `target` when it has entries (up to five are named).
///
/// # Errors
/// [`FsError::NotEmpty`], or the directory cannot be read.
pub fn ensure_empty(target: &Resolved) -> Result<(), FsError> {
    let names = entries(&target.fd, &target.path)?;
    if names.is_empty() {
        return Ok(());
    }
    let mut shown: Vec<String> = names
        .iter()
        .take(5)
        .map(|n| format!("`{}`", n.to_string_lossy()))
        .collect();
    if names.len() > 5 {
        shown.push(format!("… {} in all", names.len()));
    }
    Err(FsError::NotEmpty {
        path: target.path.clone(),
        entries: shown.join(", "),
    })
}

/// A fresh directory the host creates inside a restore target, where the
/// repository writes; removed (with whatever is left in it) when dropped.
pub struct Staging {
    parent: OwnedFd,
    name: OsString,
    /// Its absolute path.
    pub path: PathBuf,
    /// A handle on it.
    pub fd: OwnedFd,
}

impl Staging {
    /// Create `.cairn-restore-<random>` (mode 0700) inside `target`.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn create(target: &Resolved) -> Result<Self, FsError> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| FsError::Io {
            what: "choosing a staging directory name".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let name = OsString::from(format!(".cairn-restore-{}", hex::encode(random)));
        let path = target.path.join(&name);
        rustix::fs::mkdirat(&target.fd, name.as_os_str(), Mode::from_raw_mode(0o700))
            .map_err(io(format!("creating {}", path.display())))?;
        let fd = open_dir_at(&target.fd, &name, &path, &path)?;
        let parent = rustix::io::dup(&target.fd).map_err(io("duplicating a handle"))?;
        Ok(Self {
            parent,
            name,
            path,
            fd,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = remove_all_at(&self.parent, &self.name);
    }
}

/// Move every entry of `from` into `to`: an entry `to` lacks is renamed into
/// place; a directory that exists as a directory in both is merged; anything
/// else in `to` (a file, a symlink, a directory where `from` has a file) is
/// removed first. Nothing is followed: every step is relative to directory
/// handles opened with `O_NOFOLLOW`, and `renameat` replaces a symlink rather
/// than writing through it. Directories merged into take `from`'s mode and
/// times.
///
/// # Errors
/// When an entry cannot be moved or replaced; what was moved stays moved.
pub fn merge(from: &OwnedFd, to: &OwnedFd, to_path: &Path) -> Result<(), FsError> {
    for name in entries(from, to_path)? {
        let here = to_path.join(&name);
        let src = rustix::fs::statat(from, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io(format!("inspecting the restored {}", here.display())))?;
        let src_dir = FileType::from_raw_mode(src.st_mode) == FileType::Directory;
        match rustix::fs::statat(to, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => {}
            Err(e) => return Err(io(format!("inspecting {}", here.display()))(e)),
            Ok(dst) if src_dir && FileType::from_raw_mode(dst.st_mode) == FileType::Directory => {
                let sub_from = open_dir_at(from, &name, &here, &here)?;
                let sub_to = open_dir_at(to, &name, &here, &here)?;
                merge(&sub_from, &sub_to, &here)?;
                copy_dir_meta(&sub_from, &sub_to, &here)?;
                continue;
            }
            Ok(_) => remove_all_at(to, &name)?,
        }
        rustix::fs::renameat(from, name.as_os_str(), to, name.as_os_str()).map_err(io(format!(
            "moving the restored {} into place",
            here.display()
        )))?;
    }
    Ok(())
}

/// Give directory `to` the mode and times of `from`.
///
/// # Errors
/// When they cannot be read or set.
pub fn copy_dir_meta(from: &OwnedFd, to: &OwnedFd, what: &Path) -> Result<(), FsError> {
    let st = rustix::fs::fstat(from).map_err(io(format!("inspecting {}", what.display())))?;
    rustix::fs::fchmod(to, Mode::from_raw_mode(st.st_mode & 0o7777))
        .map_err(io(format!("setting the mode of {}", what.display())))?;
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    };
    rustix::fs::futimens(to, &times).map_err(io(format!("setting the times of {}", what.display())))
}

/// Remove `name` in `dir`: a file or symlink (not followed), or a directory
/// with everything in it.
fn remove_all_at(dir: &OwnedFd, name: &OsStr) -> Result<(), FsError> {
    let what = || format!("removing {}", name.to_string_lossy());
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => return Ok(()),
        other => other.map_err(io(what()))?,
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io(what()));
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io(what()))?;
    for entry in entries(&sub, Path::new(name))? {
        remove_all_at(&sub, &entry)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io(what()))
}

/// Whether `name` is usable as one path component of a restored entry: not
/// empty, not `.` or `..`, no `/` and no NUL.
#[must_use]
pub fn is_plain_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(dir: &Path, access: Access) -> BTreeMap<PathBuf, Access> {
        BTreeMap::from([(dir.to_path_buf(), access)])
    }

    #[test]
    fn paths_resolve_beneath_their_grant_and_never_through_a_symlink() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let granted = tmp.path().join("granted");
        std::fs::create_dir_all(granted.join("a/b"))?;
        std::fs::write(granted.join("a/file"), "x")?;
        std::os::unix::fs::symlink("/etc", granted.join("etc"))?;
        std::os::unix::fs::symlink(granted.join("a"), granted.join("inside"))?;
        let g = grants(&granted, Access::Read);
        let b = Beneath {
            grants: &g,
            job: "j",
        };
        let ok = b.open(&format!("{}/a/b", granted.display()), Access::Read)?;
        assert_eq!(ok.kind, FileType::Directory);
        let file = b.open(&format!("{}/a/file", granted.display()), Access::Read)?;
        assert_eq!(file.kind, FileType::RegularFile);
        for bad in ["etc", "etc/passwd", "inside", "inside/b"] {
            let err = b
                .open(&format!("{}/{bad}", granted.display()), Access::Read)
                .unwrap_err();
            assert!(matches!(err, FsError::Symlink { .. }), "{bad}: {err}");
        }
        let err = b
            .open(
                &format!("{}/../granted/../..", granted.display()),
                Access::Read,
            )
            .unwrap_err();
        assert!(matches!(err, FsError::NotGranted { .. }), "{err}");
        let err = b
            .open(&format!("{}/a/b", granted.display()), Access::ReadWrite)
            .unwrap_err();
        assert!(err.to_string().contains("read-write access"), "{err}");
        let err = b.open("relative/path", Access::Read).unwrap_err();
        assert!(matches!(err, FsError::Invalid(_)), "{err}");
        Ok(())
    }

    #[test]
    fn a_merge_replaces_symlinks_instead_of_writing_through_them() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside)?;
        let target = tmp.path().join("target");
        std::fs::create_dir_all(target.join("keep"))?;
        std::fs::write(target.join("keep/old.txt"), "old")?;
        std::os::unix::fs::symlink(&outside, target.join("x"))?;
        std::os::unix::fs::symlink(outside.join("f"), target.join("f"))?;
        let g = grants(&target, Access::ReadWrite);
        let b = Beneath {
            grants: &g,
            job: "j",
        };
        let t = b.directory(&target.display().to_string(), Access::ReadWrite, false)?;
        assert!(ensure_empty(&t).is_err());
        let staging = Staging::create(&t)?;
        std::fs::create_dir_all(staging.path.join("x"))?;
        std::fs::write(staging.path.join("x/evil.txt"), "restored")?;
        std::fs::write(staging.path.join("f"), "restored")?;
        std::fs::create_dir_all(staging.path.join("keep"))?;
        std::fs::write(staging.path.join("keep/new.txt"), "new")?;
        merge(&staging.fd, &t.fd, &t.path)?;
        drop(staging);
        assert_eq!(std::fs::read_dir(&outside)?.count(), 0, "nothing outside");
        assert!(!target.join("x").is_symlink() && target.join("x/evil.txt").is_file());
        assert!(!target.join("f").is_symlink());
        assert_eq!(std::fs::read_to_string(target.join("keep/old.txt"))?, "old");
        assert_eq!(std::fs::read_to_string(target.join("keep/new.txt"))?, "new");
        let left: Vec<_> = std::fs::read_dir(&target)?
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".cairn-restore")
            })
            .collect();
        assert!(left.is_empty(), "staging removed");
        Ok(())
    }

    #[test]
    fn missing_restore_targets_are_created_but_not_through_symlinks() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let granted = tmp.path().join("granted");
        std::fs::create_dir_all(&granted)?;
        std::os::unix::fs::symlink(tmp.path(), granted.join("up"))?;
        let g = grants(&granted, Access::ReadWrite);
        let b = Beneath {
            grants: &g,
            job: "j",
        };
        let made = b.directory(
            &format!("{}/new/deeper", granted.display()),
            Access::ReadWrite,
            true,
        )?;
        assert!(made.path.ends_with("new/deeper") && granted.join("new/deeper").is_dir());
        let err = b
            .directory(
                &format!("{}/up/escape", granted.display()),
                Access::ReadWrite,
                true,
            )
            .unwrap_err();
        assert!(matches!(err, FsError::Symlink { .. }), "{err}");
        assert!(!tmp.path().join("escape").exists());
        Ok(())
    }

    #[test]
    fn plain_names_exclude_dots_slashes_and_nul() {
        for good in [&b"a"[..], b"...", b".hidden", b"a b"] {
            assert!(is_plain_name(good), "{good:?}");
        }
        for bad in [&b""[..], b".", b"..", b"a/b", b"/etc", b"a\0b"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
