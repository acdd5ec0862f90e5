//! A repository in a local directory.
//!
//! A file is written under a temporary name in its directory, synced, and
//! renamed into place, so a killed writer never leaves a partial file under
//! a repository name. `data/XX/` directories are made when first needed.
//! Reading needs no write access: a repository on a read-only medium can be
//! listed, checked and restored from.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::{Store, StoreError, StoreErrorKind};

/// Directories of a new repository.
const DIRS: [&str; 5] = ["data", "index", "keys", "locks", "snapshots"];

#[derive(Debug)]
pub(super) struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub(super) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn error(&self, what: &str, path: &Path, e: &std::io::Error) -> StoreError {
        let kind = match e.kind() {
            IoKind::NotFound => StoreErrorKind::NotFound,
            IoKind::ReadOnlyFilesystem => StoreErrorKind::ReadOnly,
            IoKind::PermissionDenied => StoreErrorKind::Denied,
            _ => StoreErrorKind::Other,
        };
        StoreError::new(kind, format!("{what} {}: {e}", path.display()))
    }
}

/// A name no other writer of this process or another uses.
fn temporary_name(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Store for LocalStore {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<(), StoreError> {
        // restic's layout, with all 256 `data/XX` directories as `restic init` makes them.
        let subdirs = (0..=255u8).map(|i| format!("data/{i:02x}"));
        for dir in DIRS.iter().map(|d| (*d).to_owned()).chain(subdirs) {
            let path = self.root.join(dir);
            fs::create_dir_all(&path).map_err(|e| self.error("creating", &path, &e))?;
        }
        Ok(())
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let base = self.root.join(dir);
        let mut out = Vec::new();
        let mut dirs = vec![base.clone()];
        while let Some(current) = dirs.pop() {
            let entries = match fs::read_dir(&current) {
                Ok(entries) => entries,
                Err(e) if e.kind() == IoKind::NotFound => continue,
                Err(e) => return Err(self.error("listing", &current, &e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.error("listing", &current, &e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let meta = entry
                    .metadata()
                    .map_err(|e| self.error("reading", &entry.path(), &e))?;
                if meta.is_dir() && current == base && dir == "data" {
                    dirs.push(entry.path());
                } else if meta.is_file() {
                    out.push((name, meta.len()));
                }
            }
        }
        Ok(out)
    }

    fn size(&self, path: &str) -> Result<Option<u64>, StoreError> {
        let full = self.root.join(path);
        match fs::metadata(&full) {
            Ok(meta) => Ok(Some(meta.len())),
            Err(e) if matches!(e.kind(), IoKind::NotFound | IoKind::NotADirectory) => Ok(None),
            Err(e) => Err(self.error("reading", &full, &e)),
        }
    }

    fn read(&self, path: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError> {
        let full = self.root.join(path);
        let mut file = File::open(&full).map_err(|e| self.error("opening", &full, &e))?;
        let mut buf = Vec::new();
        match range {
            None => {
                file.read_to_end(&mut buf)
                    .map_err(|e| self.error("reading", &full, &e))?;
            }
            Some((offset, length)) => {
                file.seek(SeekFrom::Start(offset))
                    .map_err(|e| self.error("reading", &full, &e))?;
                buf.reserve(usize::try_from(length).unwrap_or(0));
                file.take(length)
                    .read_to_end(&mut buf)
                    .map_err(|e| self.error("reading", &full, &e))?;
            }
        }
        Ok(Bytes::from(buf))
    }

    fn write(&self, path: &str, data: &[Bytes]) -> Result<(), StoreError> {
        let full = self.root.join(path);
        if let Some(parent) = full.parent()
            && !parent.is_dir()
        {
            fs::create_dir_all(parent).map_err(|e| self.error("creating", parent, &e))?;
        }
        let tmp = temporary_name(&full);
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| self.error("creating", &tmp, &e))?;
            for chunk in data {
                file.write_all(chunk)
                    .map_err(|e| self.error("writing", &tmp, &e))?;
            }
            file.sync_all()
                .map_err(|e| self.error("syncing", &tmp, &e))?;
            fs::rename(&tmp, &full).map_err(|e| self.error("renaming into", &full, &e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn remove(&self, path: &str) -> Result<(), StoreError> {
        let full = self.root.join(path);
        match fs::remove_file(&full) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == IoKind::NotFound => Ok(()),
            Err(e) => Err(self.error("removing", &full, &e)),
        }
    }

    fn is_empty(&self) -> Result<bool, StoreError> {
        match fs::read_dir(&self.root) {
            Ok(mut entries) => Ok(entries.next().is_none()),
            Err(e) if e.kind() == IoKind::NotFound => Ok(true),
            Err(e) if e.kind() == IoKind::NotADirectory => Err(StoreError::new(
                StoreErrorKind::Other,
                format!("{} is a file, not a directory", self.root.display()),
            )),
            Err(e) => Err(self.error("reading", &self.root, &e)),
        }
    }
}
