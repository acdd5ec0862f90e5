//! Restore sessions: read the artifacts of one committed snapshot.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    fs,
    io::{Read, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use rustic_core::{
    BlobId, DataId, IndexedFullStatus, LsOptions,
    repofile::{BlobType, Node, NodeType, SnapshotFile},
};

use super::{
    ArtifactInfo, ArtifactKind, INTERNAL_DIR, MANIFEST_NAME, Manifest, RepoError, Repository,
    SnapshotInfo, failed, lock::RepoLock, snapshot_info,
};

type Indexed = rustic_core::Repository<IndexedFullStatus>;

/// The manifest is small; refuse anything bigger than this.
const MANIFEST_MAX: u64 = 16 << 20;

/// One snapshot opened for reading. Holds a shared repository lock. `Send`.
pub struct RestoreSession {
    pub(super) repo: Arc<Indexed>,
    pub(super) snap: SnapshotFile,
    info: SnapshotInfo,
    manifest: Option<Manifest>,
    skip_damaged: bool,
    _lock: RepoLock,
}

impl std::fmt::Debug for RestoreSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreSession")
            .field("snapshot", &self.info)
            .finish_non_exhaustive()
    }
}

/// Bounded-memory reader over one file of a snapshot, one blob (at most
/// 8 MiB, restic's largest chunk) at a time. A blob that cannot be read or
/// does not decrypt is reported with the pack it lies in.
struct StreamReader {
    repo: Arc<Indexed>,
    name: String,
    blobs: std::vec::IntoIter<DataId>,
    buf: Bytes,
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.buf.is_empty() {
            let Some(id) = self.blobs.next() else {
                return Ok(0);
            };
            self.buf = read_blob(&self.repo, &id, &self.name).map_err(std::io::Error::other)?;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf = self.buf.slice(n..);
        Ok(n)
    }
}

/// A data blob of file `name`; the error names the damaged (or missing)
/// pack and what to do.
fn read_blob(repo: &Indexed, id: &DataId, name: &str) -> Result<Bytes, String> {
    let blob = BlobId::from(*id);
    repo.get_blob_cached(&blob, BlobType::Data).map_err(|e| {
        let pack = repo.get_index_entry(id).map_or_else(
            |_| "no pack (the blob is missing from the index)".to_owned(),
            |entry| format!("pack {}", entry.pack.to_hex().as_str()),
        );
        format!(
            "`{name}` cannot be read: blob {} in {pack} is damaged or missing ({}). \
             `cairn check --read-data` lists what is damaged; a tree restore with \
             --skip-damaged brings back the files that are intact",
            blob.to_hex().as_str(),
            e.display_log().lines().next().unwrap_or("unreadable")
        )
    })
}

impl RestoreSession {
    pub(super) fn new(
        owner: &Repository,
        repo: rustic_core::Repository<rustic_core::OpenStatus>,
        snap: SnapshotFile,
        lock: RepoLock,
    ) -> Result<Self, RepoError> {
        let repo = repo
            .to_indexed()
            .map_err(failed(format!("reading the index of {}", owner.location())))?;
        let mut session = Self {
            repo: Arc::new(repo),
            info: snapshot_info(&snap),
            snap,
            manifest: None,
            skip_damaged: false,
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
        Ok(StreamReader {
            repo: self.repo.clone(),
            name: node.name().to_string_lossy().into_owned(),
            blobs: node.content.clone().unwrap_or_default().into_iter(),
            buf: Bytes::new(),
        })
    }

    /// Leave files whose data is damaged out of tree restores (listed in
    /// [`RestoredTree::damaged`]) instead of failing: restore what is intact.
    #[must_use]
    pub fn skip_damaged(mut self, skip: bool) -> Self {
        self.skip_damaged = skip;
        self
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

    /// Every entry under `path` (an artifact name, or a path inside a tree
    /// artifact; empty for the whole snapshot), depth first, as `restic ls`
    /// lists them: the path itself first, then what lies below it. Cairn's
    /// own `.cairn/` entries are left out of a whole-snapshot listing.
    ///
    /// # Errors
    ///
    /// [`RepoError::Failed`] if `path` is not in the snapshot or a tree
    /// cannot be read.
    pub fn ls(&self, path: &str) -> Result<Vec<LsEntry>, RepoError> {
        let path = path.trim_matches('/');
        let what = self.what(&format!("listing `/{path}`"));
        let node = self
            .repo
            .node_from_snapshot_and_path(&self.snap, path)
            .map_err(failed(what.clone()))?;
        let mut out = Vec::new();
        if !path.is_empty() {
            out.push(LsEntry::new(&format!("/{path}"), &node));
        }
        if node.is_dir() {
            let entries = self
                .repo
                .ls(&node, &LsOptions::default().recursive(true))
                .map_err(failed(what.clone()))?;
            for entry in entries {
                let (rel, child) = entry.map_err(failed(what.clone()))?;
                let rel = rel.to_string_lossy();
                if path.is_empty()
                    && (rel == INTERNAL_DIR || rel.starts_with(&format!("{INTERNAL_DIR}/")))
                {
                    continue;
                }
                let full = if path.is_empty() {
                    format!("/{rel}")
                } else {
                    format!("/{path}/{rel}")
                };
                out.push(LsEntry::new(&full, &child));
            }
        }
        Ok(out)
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
    /// Nothing is written through a link: directories are created, never
    /// reused, files created new. Each file is written under a temporary name
    /// and renamed when all its bytes are in, so a file that looks complete
    /// is. With [`Self::skip_damaged`], a file whose data cannot be read (a damaged
    /// or missing pack) is left out and listed in [`RestoredTree::damaged`];
    /// without, the first one fails the restore naming the pack.
    ///
    /// Restored: directories, files, symlinks, permission bits and
    /// modification times. Not restored: owners, extended attributes, device
    /// nodes, FIFOs and sockets (listed in [`RestoredTree::skipped`]).
    ///
    /// # Errors
    ///
    /// [`RepoError::NoSuchArtifact`], [`RepoError::WrongKind`], [`RepoError::Failed`].
    pub fn restore_tree(&self, name: &str, target: &Path) -> Result<RestoredTree, RepoError> {
        let skip_damaged = self.skip_damaged;
        let (info, node) = self.artifact(name, ArtifactKind::Tree)?;
        let what = format!(
            "restoring artifact `{name}` of snapshot {} into {}",
            self.info.short_id,
            target.display()
        );
        let refuse = |message: String| RepoError::Failed {
            what: what.clone(),
            message,
        };
        let io = |action: String| {
            let what = what.clone();
            move |e: std::io::Error| RepoError::Failed {
                what,
                message: format!("{action}: {e}"),
            }
        };
        let entries: Vec<(PathBuf, Node)> = if node.is_dir() {
            let ls = self
                .repo
                .ls(&node, &LsOptions::default().recursive(true))
                .map_err(failed(what.clone()))?;
            ls.map(|e| e.map_err(failed(what.clone())))
                .collect::<Result<_, _>>()?
        } else {
            vec![(PathBuf::from(name), node.clone())]
        };
        let mut seen = std::collections::HashSet::new();
        let mut links = std::collections::HashSet::new();
        for (path, entry) in &entries {
            check_entry_path(path).map_err(refuse)?;
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
                links.insert(path.clone());
            }
        }

        if !target.exists() {
            fs::create_dir_all(target).map_err(io(format!("creating {}", target.display())))?;
        }
        let mut restored = RestoredTree {
            info,
            is_dir: node.is_dir(),
            damaged: Vec::new(),
            skipped: Vec::new(),
        };
        let mut dirs = Vec::new();
        for (path, entry) in &entries {
            let dest = target.join(path);
            match &entry.node_type {
                NodeType::Dir => {
                    fs::create_dir(&dest).map_err(io(format!("creating {}", dest.display())))?;
                    dirs.push((dest, entry));
                }
                NodeType::File => match self.restore_file(entry, path, &dest) {
                    Ok(()) => {}
                    Err(FileError::Damaged(message)) if skip_damaged => {
                        restored.damaged.push(message);
                    }
                    Err(FileError::Damaged(message)) => return Err(refuse(message)),
                    Err(FileError::Io(action, e)) => return Err(io(action)(e)),
                },
                NodeType::Symlink { .. } => {
                    std::os::unix::fs::symlink(entry.node_type.to_link(), &dest)
                        .map_err(io(format!("creating symlink {}", dest.display())))?;
                }
                _ => restored.skipped.push(path.display().to_string()),
            }
        }
        // Directory times last (writing inside a directory changes its mtime),
        // deepest first; then the artifact's root.
        for (dest, entry) in dirs.iter().rev() {
            set_metadata(dest, entry)
                .map_err(io(format!("setting metadata of {}", dest.display())))?;
        }
        if node.is_dir() {
            set_metadata(target, &node)
                .map_err(io(format!("setting metadata of {}", target.display())))?;
        }
        Ok(restored)
    }

    /// Write one file at `dest` through a temporary name beside it.
    fn restore_file(&self, node: &Node, path: &Path, dest: &Path) -> Result<(), FileError> {
        let file_name = dest.file_name().unwrap_or_default().to_string_lossy();
        let partial =
            dest.with_file_name(format!(".{file_name}.cairn-partial-{}", std::process::id()));
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .map_err(|e| FileError::Io(format!("creating {}", partial.display()), e))?;
            let shown = path.display().to_string();
            let mut written = 0u64;
            for id in node.content.iter().flatten() {
                let data = read_blob(&self.repo, id, &shown).map_err(FileError::Damaged)?;
                file.write_all(&data)
                    .map_err(|e| FileError::Io(format!("writing {}", partial.display()), e))?;
                written += data.len() as u64;
            }
            if written != node.meta.size {
                return Err(FileError::Damaged(format!(
                    "`{shown}` has {written} bytes in the repository, but its snapshot says {}: \
                     the snapshot is damaged (`cairn check` says more)",
                    node.meta.size
                )));
            }
            drop(file);
            set_metadata(&partial, node).map_err(|e| {
                FileError::Io(format!("setting metadata of {}", partial.display()), e)
            })?;
            fs::rename(&partial, dest)
                .map_err(|e| FileError::Io(format!("renaming {} into place", partial.display()), e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&partial);
        }
        result
    }
}

/// Why one file was not restored.
enum FileError {
    /// Its data cannot be read from the repository (the message says which pack).
    Damaged(String),
    /// Writing it failed: (what was being done, the error).
    Io(String, std::io::Error),
}

/// Permission bits (restic stores Go's mode; the low 12 bits are the Unix
/// ones) and modification time of a restored file or directory.
fn set_metadata(path: &Path, node: &Node) -> std::io::Result<()> {
    if let Some(mtime) = node.meta.mtime {
        let file = fs::File::options().read(true).open(path)?;
        file.set_modified(std::time::SystemTime::from(mtime))?;
    }
    if let Some(mode) = node.meta.mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o777))?;
    }
    Ok(())
}

/// What [`RestoreSession::restore_tree`] restored.
#[derive(Debug, Clone)]
pub struct RestoredTree {
    /// The artifact.
    pub info: ArtifactInfo,
    /// Whether its root is a directory (else one file, `target/<name>`).
    pub is_dir: bool,
    /// Files left out because their data is damaged (`skip_damaged`), each
    /// with the pack and the reason.
    pub damaged: Vec<String>,
    /// Entries not restored because they are device nodes, FIFOs or sockets.
    pub skipped: Vec<String>,
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

/// One entry of a snapshot, as [`RestoreSession::ls`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LsEntry {
    /// Absolute path in the snapshot (`/artifact/sub/file`).
    pub path: String,
    /// `file`, `dir`, `symlink`, `dev`, `chardev`, `fifo` or `socket`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Permission bits (`0o755`), when recorded.
    pub mode: Option<u32>,
    /// Bytes of a file (0 for other entries).
    pub size: u64,
    /// Modification time, milliseconds since the Unix epoch, when recorded.
    pub mtime_ms: Option<i64>,
    /// Where a symlink points.
    pub target: Option<String>,
}

impl LsEntry {
    fn new(path: &str, node: &Node) -> Self {
        use rustic_core::repofile::NodeType;
        let (kind, target) = match &node.node_type {
            NodeType::File => ("file", None),
            NodeType::Dir => ("dir", None),
            NodeType::Symlink { .. } => (
                "symlink",
                Some(node.node_type.to_link().to_string_lossy().into_owned()),
            ),
            NodeType::Dev { .. } => ("dev", None),
            NodeType::Chardev { .. } => ("chardev", None),
            NodeType::Fifo => ("fifo", None),
            NodeType::Socket => ("socket", None),
        };
        Self {
            path: path.to_string(),
            kind,
            mode: node.meta.mode.map(|m| m & 0o7777),
            size: if kind == "file" { node.meta.size } else { 0 },
            mtime_ms: node.meta.mtime.as_ref().map(|t| t.as_millisecond()),
            target,
        }
    }
}
