//! Artifacts of the current run's snapshot (`cairn:plugin/storage`).
//!
//! Bulk bytes should flow host-side: [`create_from_command`] stores a
//! command's stdout and [`add_tree`] a granted directory without the bytes
//! passing through the module; [`restore_to_command`] and [`restore_tree`]
//! bring them back. Small artifacts can be written and read through
//! [`Writer`] (`std::io::Write`) and [`Reader`] (`std::io::Read`).
//!
//! ```no_run
//! use std::io::{Read, Write};
//!
//! use cairn_guest::{shell::Command, storage, Result};
//!
//! fn backup() -> Result<()> {
//!     let dump = Command::new("pg_dump").args(["-Fc", "app"]);
//!     storage::create_from_command("app.dump", &dump)?;
//!     storage::add_tree("uploads", "/srv/app/uploads")?;
//!     let mut manifest = storage::create("manifest.json")?;
//!     manifest.write_all(br#"{"format": 1}"#)?;
//!     manifest.finish()?;
//!     storage::set_note("format", "1")?;
//!     Ok(())
//! }
//!
//! fn restore() -> Result<()> {
//!     let mut manifest = String::new();
//!     storage::open("manifest.json")?.read_to_string(&mut manifest)?;
//!     let restore = Command::new("pg_restore").args(["-d", "app", "--clean"]);
//!     storage::restore_to_command("app.dump", &restore)?.check()?;
//!     storage::restore_tree("uploads", "/srv/app/uploads", true)?;
//!     Ok(())
//! }
//! ```

use std::collections::BTreeMap;
use std::io;

use crate::__private::storage as wit;
use crate::shell::{Command, Output};
use crate::{Error, Result};

pub use crate::__private::storage::{Artifact, ArtifactKind};

/// How many bytes a [`Writer`] gathers before sending them to the host.
const WRITE_BUFFER: usize = 64 * 1024;

/// Start stream artifact `name` (backup runs only). Write to it, then call
/// [`Writer::finish`]; a writer dropped unfinished is discarded.
///
/// # Errors
///
/// `invalid` for a bad or duplicate name, `unsupported` during a restore.
pub fn create(name: &str) -> Result<Writer> {
    let inner = wit::create(name).map_err(Error::from_wit)?;
    Ok(Writer {
        inner,
        buffer: Vec::new(),
    })
}

/// Run `command` and store its stdout as stream artifact `name`, without the
/// bytes passing through the module. (`command`'s stdin is not used.)
///
/// # Errors
///
/// As [`Command::run`], and `failed` if the command exits non-zero.
pub fn create_from_command(name: &str, command: &Command) -> Result<Artifact> {
    wit::create_from_command(name, command.as_wit()).map_err(Error::from_wit)
}

/// Add the granted directory (or file) at `path` as tree artifact `name`.
///
/// # Errors
///
/// `denied` for a path the job does not grant, `not-found` if it does not
/// exist, `failed` for I/O errors.
pub fn add_tree(name: &str, path: &str) -> Result<Artifact> {
    wit::add_tree(name, path).map_err(Error::from_wit)
}

/// Record a key/value note in the snapshot (for example the name of an
/// Elasticsearch snapshot), readable again at restore through [`notes`].
///
/// # Errors
///
/// `unsupported` during a restore.
pub fn set_note(key: &str, value: &str) -> Result<()> {
    wit::set_note(key, value).map_err(Error::from_wit)
}

/// Notes of the snapshot being written or restored.
///
/// # Errors
///
/// When the host cannot read the snapshot.
pub fn notes() -> Result<BTreeMap<String, String>> {
    Ok(wit::notes().map_err(Error::from_wit)?.into_iter().collect())
}

/// The note `key` of the snapshot being written or restored, if set.
///
/// # Errors
///
/// When the host cannot read the snapshot.
pub fn note(key: &str) -> Result<Option<String>> {
    Ok(notes()?.remove(key))
}

/// Artifacts written so far (backup) or held by the snapshot (restore).
///
/// # Errors
///
/// When the host cannot read the snapshot.
pub fn list() -> Result<Vec<Artifact>> {
    wit::list().map_err(Error::from_wit)
}

/// Open stream artifact `name` of the snapshot being restored.
///
/// # Errors
///
/// `not-found` if the snapshot holds no such stream artifact.
pub fn open(name: &str) -> Result<Reader> {
    let inner = wit::open(name).map_err(Error::from_wit)?;
    Ok(Reader {
        inner,
        pending: Vec::new(),
        offset: 0,
    })
}

/// Feed stream artifact `name` into `command`'s stdin, host-side, and wait
/// for it. (`command`'s own stdin is not used.)
///
/// # Errors
///
/// As [`Command::run`], and `not-found` for a missing artifact. A non-zero
/// exit is an [`Output`], not an error.
pub fn restore_to_command(name: &str, command: &Command) -> Result<Output> {
    let output = wit::restore_to_command(name, command.as_wit()).map_err(Error::from_wit)?;
    Ok(Output::from_wit(output, command.program()))
}

/// Restore tree artifact `name` under the granted directory `target`
/// (created if missing). Unless `overwrite`, a target that has entries is
/// refused; with it, restored entries replace what is there and other
/// entries stay. Symlinks in the target are replaced, never followed.
///
/// # Errors
///
/// `denied` for a target the job does not grant (or one reached through a
/// symlink), `invalid` for a non-empty target without `overwrite`,
/// `not-found` for a missing artifact, `failed` for I/O errors.
pub fn restore_tree(name: &str, target: &str, overwrite: bool) -> Result<Artifact> {
    wit::restore_tree(name, target, overwrite).map_err(Error::from_wit)
}

/// A stream artifact being written; implements [`std::io::Write`] (writes
/// are buffered). Call [`Writer::finish`] to keep it.
#[derive(Debug)]
pub struct Writer {
    inner: wit::Writer,
    buffer: Vec<u8>,
}

impl Writer {
    /// Send any buffered bytes and complete the artifact.
    ///
    /// # Errors
    ///
    /// When the host fails to store the bytes.
    pub fn finish(mut self) -> Result<Artifact> {
        self.send_buffer()?;
        self.inner.finish().map_err(Error::from_wit)
    }

    fn send_buffer(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            self.inner.write(&self.buffer).map_err(Error::from_wit)?;
            self.buffer.clear();
        }
        Ok(())
    }
}

impl io::Write for Writer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buffer.len() + bytes.len() > WRITE_BUFFER {
            self.send_buffer().map_err(Error::into_io)?;
        }
        if bytes.len() >= WRITE_BUFFER {
            self.inner
                .write(bytes)
                .map_err(|e| Error::from_wit(e).into_io())?;
        } else {
            self.buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer().map_err(Error::into_io)
    }
}

/// A stream artifact being read; implements [`std::io::Read`].
#[derive(Debug)]
pub struct Reader {
    inner: wit::Reader,
    /// Bytes received but not yet handed out, from `offset` on.
    pending: Vec<u8>,
    offset: usize,
}

impl io::Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.offset >= self.pending.len() {
            self.pending = self
                .inner
                .read(buf.len() as u64)
                .map_err(|e| Error::from_wit(e).into_io())?;
            self.offset = 0;
        }
        let n = buf.len().min(self.pending.len() - self.offset);
        buf[..n].copy_from_slice(&self.pending[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}
