//! Where a repository's files live: a local directory, an S3 bucket, or a
//! restic REST server, behind one small [`Store`] interface (list, read,
//! write, remove files by their repository path), and the adapter that
//! gives rustic_core its backend traits over it.
//!
//! Why our own stores rather than `rustic_backend`'s `opendal` and `rest`
//! features: those pull a second HTTP stack (reqwest 0.13 with aws-lc, a C
//! build) and 25 opendal services; their errors reach the user as
//! "Creating Operator from path … failed". Ours use the reqwest/rustls the
//! host already builds, retry transient failures with backoff, name the
//! backend, bucket, file and HTTP status when they give up, tell a
//! read-only medium apart, and also carry what rustic has no file type for:
//! restic's lock files (`locks/`, see `super::lock`).
//!
//! Paths are restic's layout: `config`, `keys/ID`, `snapshots/ID`,
//! `index/ID`, `locks/ID` and `data/XX/ID`.

mod local;
mod remote;
mod rest;
mod s3;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use crate::model::Location;

/// What kind of failure a store met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The file (or the bucket, or the repository) does not exist.
    NotFound,
    /// The medium or the credentials do not allow writing.
    ReadOnly,
    /// Credentials refused or missing.
    Denied,
    /// Anything else (after retries, for remote stores).
    Other,
}

/// A failed store operation; the message names the backend, the file and
/// (remote) the HTTP status and the server's reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// What kind of failure.
    pub kind: StoreErrorKind,
    /// What happened, on what.
    pub message: String,
}

impl StoreError {
    pub(crate) fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The files of one repository.
pub trait Store: Send + Sync + fmt::Debug {
    /// The location as users write it (no credentials).
    fn location(&self) -> String;
    /// Make the place ready for a new repository (directories, bucket).
    ///
    /// # Errors
    /// When it cannot be made.
    fn create(&self) -> Result<(), StoreError>;
    /// Files under `dir` (`keys`, `snapshots`, `index`, `locks`, or `data`
    /// with its sub-directories): their names and sizes.
    ///
    /// # Errors
    /// When the listing fails (a missing directory is an empty list).
    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, StoreError>;
    /// The size of `path`, or `None` when it does not exist.
    ///
    /// # Errors
    /// When asking fails.
    fn size(&self, path: &str) -> Result<Option<u64>, StoreError>;
    /// The bytes of `path`, or `length` of them from `offset`.
    ///
    /// # Errors
    /// [`StoreErrorKind::NotFound`], or a read failure.
    fn read(&self, path: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError>;
    /// Store `data` as `path`, whole or not at all (a reader never sees a
    /// part of it under that name).
    ///
    /// # Errors
    /// When it cannot be written.
    fn write(&self, path: &str, data: &[Bytes]) -> Result<(), StoreError>;
    /// Remove `path` (gone already is fine).
    ///
    /// # Errors
    /// When it cannot be removed.
    fn remove(&self, path: &str) -> Result<(), StoreError>;
    /// Whether the location holds nothing at all (for `init`).
    ///
    /// # Errors
    /// When it cannot be read; a location that is a file is an error.
    fn is_empty(&self) -> Result<bool, StoreError>;
}

/// The store at `location`, with its credentials read now.
///
/// # Errors
/// A credential that cannot be read, or a location that cannot be used.
pub fn open(location: &Location) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match location {
        Location::Local(path) => Arc::new(local::LocalStore::new(path.clone())),
        Location::S3(s3) => Arc::new(s3::S3Store::new(s3)?),
        Location::Rest(rest) => Arc::new(rest::RestStore::new(rest)?),
    })
}

/// The repository path of a rustic file.
pub(super) fn file_path(tpe: FileType, id: &Id) -> String {
    let hex = id.to_hex();
    match tpe {
        FileType::Config => "config".to_owned(),
        FileType::Pack => format!("data/{}/{}", &hex[..2], hex.as_str()),
        other => format!("{}/{}", other.dirname(), hex.as_str()),
    }
}

/// rustic's backend traits over a [`Store`]; a failure carries the store's
/// own message (backend, file, status, reason).
#[derive(Debug)]
pub struct Backend {
    store: Arc<dyn Store>,
}

impl Backend {
    /// rustic's view of `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    #[allow(clippy::unused_self, reason = "a method keeps the call sites short")]
    fn fail(&self, e: StoreError) -> Box<RusticError> {
        RusticError::new(ErrorKind::Backend, "{message}").attach_context("message", e.message)
    }
}

impl ReadBackend for Backend {
    fn location(&self) -> String {
        self.store.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            return Ok(match self.store.size("config").map_err(|e| self.fail(e))? {
                Some(size) => vec![(Id::default(), u32::try_from(size).unwrap_or(u32::MAX))],
                None => Vec::new(),
            });
        }
        let files = self.store.list(tpe.dirname()).map_err(|e| self.fail(e))?;
        Ok(files
            .into_iter()
            .filter_map(|(name, size)| {
                let id = name.parse::<Id>().ok()?;
                Some((id, u32::try_from(size).ok()?))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.store
            .read(&file_path(tpe, id), None)
            .map_err(|e| self.fail(e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let bytes = self
            .store
            .read(
                &file_path(tpe, id),
                Some((u64::from(offset), u64::from(length))),
            )
            .map_err(|e| self.fail(e))?;
        if bytes.len() != length as usize {
            return Err(self.fail(StoreError::new(
                StoreErrorKind::Other,
                format!(
                    "reading {} of {}: {} bytes at {offset} expected, {} found (the file is shorter than the index says: run `cairn check`)",
                    file_path(tpe, id),
                    self.store.location(),
                    length,
                    bytes.len()
                ),
            )));
        }
        Ok(bytes)
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        file_path(tpe, id)
    }
}

impl WriteBackend for Backend {
    fn create(&self) -> RusticResult<()> {
        self.store.create().map_err(|e| self.fail(e))
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        buf: BytesList,
    ) -> RusticResult<()> {
        self.store
            .write(&file_path(tpe, id), buf.slice())
            .map_err(|e| self.fail(e))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        self.store
            .remove(&file_path(tpe, id))
            .map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_where_restic_puts_them() {
        let id: Id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            .parse()
            .unwrap();
        assert_eq!(file_path(FileType::Config, &id), "config");
        assert_eq!(
            file_path(FileType::Pack, &id),
            format!("data/01/{}", id.to_hex().as_str())
        );
        assert_eq!(
            file_path(FileType::Snapshot, &id),
            format!("snapshots/{}", id.to_hex().as_str())
        );
        assert_eq!(
            file_path(FileType::Key, &id),
            format!("keys/{}", id.to_hex().as_str())
        );
    }
}
