//! Repository lock: `flock(2)` on `<repository path>.cairn-lock`, next to the
//! repository directory (outside restic's layout).
//!
//! Shared for backups, restores and checks; exclusive for forget and prune.

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::RepoError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LockMode {
    Shared,
    Exclusive,
}

/// A held lock; released when dropped (the file is closed).
#[derive(Debug)]
pub(super) struct RepoLock {
    _file: File,
}

/// `<dir>/<name>.cairn-lock` for repository `<dir>/<name>`.
pub(super) fn lock_path(repo: &Path) -> Result<PathBuf, RepoError> {
    let abs = std::path::absolute(repo).map_err(|source| RepoError::Io {
        what: format!("resolving repository path {}", repo.display()),
        source,
    })?;
    let name = abs.file_name().ok_or_else(|| RepoError::Failed {
        what: format!("locking repository {}", repo.display()),
        message:
            "the path has no final component to name a lock file after; use a directory below `/`"
                .into(),
    })?;
    let mut lock_name = name.to_os_string();
    lock_name.push(".cairn-lock");
    Ok(abs.with_file_name(lock_name))
}

impl RepoLock {
    /// Take the lock, polling until `timeout` has passed.
    pub(super) fn acquire(
        repo: &Path,
        mode: LockMode,
        timeout: Duration,
    ) -> Result<Self, RepoError> {
        let path = lock_path(repo)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| RepoError::Io {
                what: format!(
                    "creating lock file {} (the repository's parent directory must be writable)",
                    path.display()
                ),
                source,
            })?;
        let op = match mode {
            LockMode::Shared => libc::LOCK_SH,
            LockMode::Exclusive => libc::LOCK_EX,
        } | libc::LOCK_NB;
        let start = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            // SAFETY: flock on a file descriptor we own; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                return Ok(Self { _file: file });
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) => {}
                Some(libc::EINTR) => continue,
                _ => {
                    return Err(RepoError::Io {
                        what: format!("locking {}", path.display()),
                        source: err,
                    });
                }
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(RepoError::Busy {
                    path: repo.to_path_buf(),
                    lock_file: path,
                    waited,
                });
            }
            std::thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}
