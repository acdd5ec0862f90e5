//! Restore sessions: read the artifacts of one committed snapshot.

use std::{collections::BTreeMap, ffi::OsStr, io::Read, path::Path, sync::Arc};

use bytes::Bytes;
use rustic_core::{
    IndexedFullStatus, LocalDestination, LsOptions, RestoreOptions,
    repofile::{Node, SnapshotFile},
};

use super::{
    ArtifactInfo, ArtifactKind, INTERNAL_DIR, MANIFEST_NAME, Manifest, RepoError, Repository,
    SnapshotInfo, failed, lock::RepoLock, path_str, snapshot_info,
};

type Indexed = rustic_core::Repository<IndexedFullStatus>;

/// Reads go to rustic in pieces of this size.
const READ_CHUNK: usize = 4 << 20;
/// The manifest is small; refuse anything bigger than this.
const MANIFEST_MAX: u64 = 16 << 20;

/// One snapshot opened for reading. Holds a shared repository lock. `Send`.
pub struct RestoreSession {
    repo: Arc<Indexed>,
    snap: SnapshotFile,
    info: SnapshotInfo,
    manifest: Option<Manifest>,
    _lock: RepoLock,
}

impl std::fmt::Debug for RestoreSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreSession")
            .field("snapshot", &self.info)
            .finish_non_exhaustive()
    }
}

/// Bounded-memory reader over one file of a snapshot.
struct StreamReader {
    repo: Arc<Indexed>,
    file: rustic_core::vfs::OpenFile,
    offset: usize,
    buf: Bytes,
    done: bool,
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.buf.is_empty() && !self.done {
            self.buf = self
                .repo
                .read_file_at(&self.file, self.offset, READ_CHUNK)
                .map_err(|e| std::io::Error::other(e.display_log()))?;
            self.offset += self.buf.len();
            self.done = self.buf.is_empty();
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

impl RestoreSession {
    pub(super) fn new(
        owner: &Repository,
        repo: rustic_core::Repository<rustic_core::OpenStatus>,
        snap: SnapshotFile,
        lock: RepoLock,
    ) -> Result<Self, RepoError> {
        let repo = repo.to_indexed().map_err(failed(format!(
            "reading the index of {}",
            owner.path().display()
        )))?;
        let mut session = Self {
            repo: Arc::new(repo),
            info: snapshot_info(&snap),
            snap,
            manifest: None,
            _lock: lock,
        };
        session.manifest = session.read_manifest()?;
        Ok(session)
    }

    fn what(&self, action: &str) -> String {
        format!("{action} in snapshot {}", self.info.short_id)
    }

    fn root_nodes(&self) -> Result<Vec<Node>, RepoError> {
        let tree = self
            .repo
            .get_tree(&self.snap.tree)
            .map_err(failed(self.what("reading the root tree")))?;
        Ok(tree.nodes)
    }

    fn read_manifest(&self) -> Result<Option<Manifest>, RepoError> {
        let what = self.what("reading .cairn/manifest.json");
        let Ok(node) = self
            .repo
            .node_from_snapshot_and_path(&self.snap, &format!("{INTERNAL_DIR}/{MANIFEST_NAME}"))
        else {
            return Ok(None);
        };
        if node.meta.size > MANIFEST_MAX {
            return Err(RepoError::Failed {
                what,
                message: format!(
                    "it is {} bytes, more than a manifest can be",
                    node.meta.size
                ),
            });
        }
        let mut bytes = Vec::new();
        self.reader(&node)?
            .take(MANIFEST_MAX)
            .read_to_end(&mut bytes)
            .map_err(|source| RepoError::Io {
                what: what.clone(),
                source,
            })?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RepoError::Failed {
                what,
                message: e.to_string(),
            })
    }

    fn reader(&self, node: &Node) -> Result<StreamReader, RepoError> {
        let file = self.repo.open_file(node).map_err(failed(
            self.what(&format!("opening `{}`", node.name().to_string_lossy())),
        ))?;
        Ok(StreamReader {
            repo: self.repo.clone(),
            file,
            offset: 0,
            buf: Bytes::new(),
            done: false,
        })
    }

    /// The snapshot this session reads.
    pub fn snapshot(&self) -> &SnapshotInfo {
        &self.info
    }

    /// The snapshot's artifacts, by name (internal entries excluded). For
    /// snapshots without a Cairn manifest, kinds come from the entry types.
    ///
    /// # Errors
    ///
    /// [`RepoError::Failed`] if the snapshot's tree cannot be read.
    pub fn artifacts(&self) -> Result<Vec<ArtifactInfo>, RepoError> {
        if let Some(m) = &self.manifest {
            return Ok(m.artifacts.clone());
        }
        Ok(self
            .root_nodes()?
            .into_iter()
            .filter(|n| !n.name().to_string_lossy().starts_with('.'))
            .map(|n| ArtifactInfo {
                name: n.name().to_string_lossy().into_owned(),
                kind: if n.is_dir() {
                    ArtifactKind::Tree
                } else {
                    ArtifactKind::Stream
                },
                size: n.meta.size,
            })
            .collect())
    }

    /// The notes stored with the snapshot (empty when it has none).
    ///
    /// # Errors
    ///
    /// None in practice; fallible for future storage changes.
    pub fn notes(&self) -> Result<BTreeMap<String, String>, RepoError> {
        Ok(self
            .manifest
            .as_ref()
            .map(|m| m.notes.clone())
            .unwrap_or_default())
    }

    fn artifact(
        &self,
        name: &str,
        expected: ArtifactKind,
    ) -> Result<(ArtifactInfo, Node), RepoError> {
        let no_such = || RepoError::NoSuchArtifact {
            name: name.to_string(),
            snapshot: self.info.short_id.clone(),
        };
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(no_such());
        }
        let info = self
            .artifacts()?
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(no_such)?;
        if info.kind != expected {
            return Err(RepoError::WrongKind {
                name: name.to_string(),
                expected,
            });
        }
        let node = self
            .root_nodes()?
            .into_iter()
            .find(|n| n.name() == OsStr::new(name))
            .ok_or_else(no_such)?;
        Ok((info, node))
    }

    /// A reader over stream artifact `name`; memory stays bounded (4 MiB pieces).
    ///
    /// # Errors
    ///
    /// [`RepoError::NoSuchArtifact`], [`RepoError::WrongKind`], [`RepoError::Failed`].
    /// Read errors later surface as `std::io::Error`s of the reader.
    pub fn open_stream(&self, name: &str) -> Result<Box<dyn Read + Send>, RepoError> {
        let (_, node) = self.artifact(name, ArtifactKind::Stream)?;
        if !node.is_file() {
            return Err(RepoError::WrongKind {
                name: name.to_string(),
                expected: ArtifactKind::Tree,
            });
        }
        Ok(Box::new(self.reader(&node)?))
    }

    /// Restore tree artifact `name` into the existing, empty directory
    /// `target` (the caller makes it, and moves what is restored into
    /// place). A single-file tree artifact is restored as `target/<name>`.
    /// Every entry's name is checked first: an empty name, `.`, `..`, or one
    /// with `/` or NUL (which restic never writes) refuses the restore.
    ///
    /// # Errors
    ///
    /// [`RepoError::NoSuchArtifact`], [`RepoError::WrongKind`], [`RepoError::Failed`].
    pub fn restore_tree(&self, name: &str, target: &Path) -> Result<RestoredTree, RepoError> {
        let (info, node) = self.artifact(name, ArtifactKind::Tree)?;
        let what = format!(
            "restoring artifact `{name}` of snapshot {} into {}",
            self.info.short_id,
            target.display()
        );
        let dest_path = if node.is_dir() {
            target.to_path_buf()
        } else {
            target.join(name)
        };
        let dest = LocalDestination::new(path_str(&dest_path)?, true, !node.is_dir())
            .map_err(failed(what.clone()))?;
        let ls = self
            .repo
            .ls(&node, &LsOptions::default())
            .map_err(failed(what.clone()))?;
        let mut seen = std::collections::HashSet::new();
        let mut links = std::collections::HashSet::new();
        for entry in ls.clone() {
            let (path, entry) = entry.map_err(failed(what.clone()))?;
            let refuse = |message: String| RepoError::Failed {
                what: what.clone(),
                message,
            };
            check_entry_path(&path).map_err(refuse)?;
            if !seen.insert(path.clone()) {
                return Err(refuse(format!(
                    "entry {} appears twice; refusing to restore it",
                    path.display()
                )));
            }
            if let Some(link) = path.ancestors().skip(1).find(|a| links.contains(*a)) {
                return Err(refuse(format!(
                    "entry {} lies under {}, which is a symlink; refusing to restore it",
                    path.display(),
                    link.display()
                )));
            }
            if entry.is_symlink() {
                links.insert(path);
            }
        }
        let opts = RestoreOptions::default();
        let plan = self
            .repo
            .prepare_restore(&opts, ls.clone(), &dest, false)
            .map_err(failed(what.clone()))?;
        self.repo
            .restore(plan, &opts, ls, &dest)
            .map_err(failed(what))?;
        Ok(RestoredTree {
            info,
            is_dir: node.is_dir(),
        })
    }
}

/// What [`RestoreSession::restore_tree`] restored.
#[derive(Debug, Clone)]
pub struct RestoredTree {
    /// The artifact.
    pub info: ArtifactInfo,
    /// Whether its root is a directory (else one file, `target/<name>`).
    pub is_dir: bool,
}

/// Refuse an entry path that could leave the restore directory: absolute,
/// or with an empty, `.` or `..` component, or a NUL.
pub fn check_entry_path(path: &Path) -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    use std::path::Component;
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(format!("entry {path:?} has a NUL byte in its name"));
    }
    for component in path.components() {
        match component {
            Component::Normal(_) => {}
            Component::CurDir if path == Path::new(".") => {}
            _ => {
                return Err(format!(
                    "entry {} is not a plain relative path (it has `{}`); refusing to restore it",
                    path.display(),
                    component.as_os_str().to_string_lossy()
                ));
            }
        }
    }
    Ok(())
}
