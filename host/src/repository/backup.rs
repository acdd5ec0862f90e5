//! Backup sessions: artifacts archived one at a time, committed as one snapshot.
//!
//! Each artifact is archived by rustic as its own (held, never written) snapshot;
//! [`BackupSession::commit`] merges their trees, fixes stream sizes and writes the
//! one snapshot of the run.
//!
//! rustic's archiver only logs open, read and walk errors and leaves the file out
//! of the snapshot, so every reader is wrapped to record errors itself.

use std::{
    cmp::Ordering,
    collections::BTreeMap,
    ffi::OsStr,
    io::Read,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering as AtomicOrdering},
    },
};

use rustic_core::{
    BackupOptions, Excludes, IndexedIdsStatus, LocalSource, LocalSourceFilterOptions,
    LocalSourceSaveOptions, ParentOptions, ReadSource, ReadSourceEntry, ReadSourceOpen,
    RepairSnapshotsOptions, RusticResult, SnapshotOptions,
    repofile::{Metadata, Node, NodeType, SnapshotFile, SnapshotSummary},
};

use super::{
    ArtifactInfo, ArtifactKind, INTERNAL_DIR, JOB_TAG, MANIFEST_NAME, Manifest, RUN_TAG, RepoError,
    Repository, SnapshotInfo, SnapshotMeta, TASK_TAG, failed, gate::GateBackend, lock::RepoLock,
    snapshot_info, validate_name,
};

/// Go's `os.ModeDir`, as restic stores directory modes.
const GO_MODE_DIR: u32 = 1 << 31;

/// One backup run being written. Nothing is visible until [`BackupSession::commit`];
/// dropping it without committing is [`BackupSession::abort`].
///
/// Holds a shared repository lock until committed, aborted or dropped. `Send`.
pub struct BackupSession {
    owner: Repository,
    repo: rustic_core::Repository<IndexedIdsStatus>,
    gate: Arc<GateBackend>,
    meta: SnapshotMeta,
    started: jiff::Zoned,
    parts: Vec<Part>,
    notes: BTreeMap<String, String>,
    failures: Vec<String>,
    /// The job's latest snapshot when the session began: the parent of tree
    /// artifacts (unchanged files are not read again, and the summary counts
    /// files new, changed and unchanged, as restic's does).
    parent: Option<String>,
    _lock: RepoLock,
}

impl std::fmt::Debug for BackupSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupSession")
            .field("repository", &self.owner.location().to_string())
            .field("meta", &self.meta)
            .field("artifacts", &self.artifacts())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// An archived artifact: its info and the tree rustic wrote for it.
struct Part {
    info: ArtifactInfo,
    snap: SnapshotFile,
}

/// Errors and byte count observed while rustic archives one artifact.
#[derive(Default, Debug)]
struct Health {
    errors: Mutex<Vec<String>>,
    bytes: AtomicU64,
}

impl Health {
    fn error(&self, e: String) {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(e);
    }

    fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Records read errors and counts bytes; always fills the buffer (or hits EOF):
/// rustic's chunker shrinks its read buffer to the size of any short read, so a
/// pipe giving small reads would degrade to tiny reads (1 GiB: minutes, not seconds).
struct Watched<R> {
    inner: R,
    name: String,
    health: Arc<Health>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.health.error(format!("{}: read error: {e}", self.name));
                    return Err(e);
                }
            }
        }
        self.health
            .bytes
            .fetch_add(filled as u64, AtomicOrdering::Relaxed);
        Ok(filled)
    }
}

/// How rustic gets the bytes of one file entry.
enum Opener {
    /// An already open stream (wrapped in [`Watched`]).
    Stream(Box<dyn Read + Send>),
    /// A file found by the local walker, opened lazily.
    Local(<LocalSource as ReadSource>::Open, String, Arc<Health>),
}

impl ReadSourceOpen for Opener {
    type Reader = Box<dyn Read + Send>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self {
            Opener::Stream(r) => Ok(r),
            Opener::Local(open, name, health) => match open.open() {
                Ok(file) => Ok(Box::new(Watched {
                    inner: file,
                    name,
                    health,
                })),
                Err(e) => {
                    health.error(format!("{name}: cannot open: {}", e.display_log()));
                    Err(e)
                }
            },
        }
    }
}

type Entry = RusticResult<ReadSourceEntry<Opener>>;
type EntryIter = Box<dyn Iterator<Item = Entry> + Send>;

/// A source whose entries can be taken once.
struct OneShot {
    entries: Mutex<Option<EntryIter>>,
}

impl ReadSource for OneShot {
    type Open = Opener;
    type Iter = EntryIter;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| Box::new(std::iter::empty()))
    }
}

fn entry(path: impl Into<PathBuf>, node: Node, open: Option<Opener>) -> Entry {
    Ok(ReadSourceEntry {
        path: path.into(),
        node,
        open,
    })
}

fn dir_meta(mode: u32, mtime: jiff::Timestamp) -> Metadata {
    Metadata {
        mode: Some(GO_MODE_DIR | (mode & 0o777)),
        mtime: Some(mtime),
        ..Default::default()
    }
}

impl BackupSession {
    pub(super) fn new(
        owner: Repository,
        repo: rustic_core::Repository<rustic_core::OpenStatus>,
        gate: Arc<GateBackend>,
        meta: SnapshotMeta,
        lock: RepoLock,
    ) -> Result<Self, RepoError> {
        for (what, value) in [
            ("job", &meta.job),
            ("task", &meta.task),
            ("run id", &meta.run_id),
        ] {
            if value.is_empty() || value.contains(',') {
                return Err(RepoError::Failed {
                    what: format!("starting a backup in {}", owner.location()),
                    message: format!("the {what} `{value}` must be non-empty and contain no `,`"),
                });
            }
        }
        let job_tag = format!("{JOB_TAG}{}", meta.job);
        let parent = repo
            .get_matching_snapshots(|sn| sn.tags.contains(&job_tag))
            .ok()
            .and_then(|snaps| snaps.into_iter().max_by(|a, b| a.time.cmp(&b.time)))
            .map(|sn| sn.id.to_hex().as_str().to_string());
        let repo = repo
            .to_indexed_ids()
            .map_err(failed(format!("reading the index of {}", owner.location())))?;
        gate.hold();
        Ok(Self {
            owner,
            repo,
            gate,
            meta,
            started: jiff::Zoned::now(),
            parts: Vec::new(),
            notes: BTreeMap::new(),
            failures: Vec::new(),
            parent,
            _lock: lock,
        })
    }

    fn check_new_name(&self, name: &str) -> Result<(), RepoError> {
        validate_name(name)?;
        if self.parts.iter().any(|p| p.info.name == name) {
            return Err(RepoError::ArtifactExists {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Archive `entries` as a held, discarded snapshot; fail (and remember the
    /// failure) on any error rustic reported or only logged.
    fn archive(
        &mut self,
        what: &str,
        path: &str,
        entries: Vec<Entry>,
        health: &Health,
    ) -> Result<SnapshotFile, RepoError> {
        let src = OneShot {
            entries: Mutex::new(Some(Box::new(entries.into_iter()))),
        };
        let result = self.archive_source(path, src, None);
        self.gate.discard();
        let mut errors = health.errors();
        match result {
            Ok(snap) if errors.is_empty() => return Ok(snap),
            Ok(_) => {}
            Err(e) => errors.insert(0, e.display_log()),
        }
        let message = errors.join("; ");
        self.failures.push(format!("{what}: {message}"));
        Err(RepoError::Failed {
            what: what.to_string(),
            message: format!("{message} (this run's snapshot cannot be committed)"),
        })
    }

    /// Archive `src` under `path`, against `parent` (a snapshot id) if given.
    fn archive_source<R>(
        &self,
        path: &str,
        src: R,
        parent: Option<&str>,
    ) -> RusticResult<SnapshotFile>
    where
        R: ReadSource<Open = Opener, Iter = EntryIter> + 'static,
    {
        // A stream part never has a parent: unchanged-looking stream nodes
        // must not reuse old content. A tree part is compared with the job's
        // previous snapshot, found by id whatever its host or paths.
        let parent_opts = match parent {
            Some(id) => ParentOptions::default()
                .group_by(rustic_core::SnapshotGroupCriterion::new())
                .parents(vec![id.to_string()]),
            None => ParentOptions::default().force(true),
        };
        let opts = BackupOptions::default().parent_opts(parent_opts);
        let snap = SnapshotOptions::default().to_snapshot()?;
        self.repo.archive(&opts, &src, snap, &[PathBuf::from(path)])
    }

    /// Archive everything `reader` yields as stream artifact `name` (a file at the
    /// snapshot root, mode 0600). Memory stays bounded; nothing is staged on disk.
    ///
    /// # Errors
    ///
    /// [`RepoError::InvalidName`], [`RepoError::ArtifactExists`]; [`RepoError::Failed`]
    /// when reading or writing fails, after which the session cannot commit.
    pub fn add_stream(
        &mut self,
        name: &str,
        reader: Box<dyn Read + Send>,
    ) -> Result<ArtifactInfo, RepoError> {
        self.check_new_name(name)?;
        let health = Arc::new(Health::default());
        let reader = Watched {
            inner: reader,
            name: name.to_string(),
            health: health.clone(),
        };
        let meta = Metadata {
            mode: Some(0o600),
            mtime: Some(jiff::Timestamp::now()),
            ..Default::default()
        };
        let node = Node::new_node(OsStr::new(name), NodeType::File, meta);
        // A directory node at path "" is stored as a plain node without subtree. At
        // commit, rustic's repair turns it into an empty directory, which forces it to
        // rewrite this root tree and so persist the stream's real size (rustic records
        // 0 for files read from a stream, and restic truncates restored files to the
        // recorded size). Merged with the other parts it becomes `.cairn/`.
        // Names sort after `.cairn` (see `validate_name`), so the tree stays sorted.
        let marker = Node::new_node(
            OsStr::new(INTERNAL_DIR),
            NodeType::Dir,
            dir_meta(0o755, jiff::Timestamp::now()),
        );
        let entries = vec![
            entry("", marker, None),
            entry(name, node, Some(Opener::Stream(Box::new(reader)))),
        ];
        let what = format!("archiving stream artifact `{name}`");
        let snap = self.archive(&what, name, entries, &health)?;
        let info = ArtifactInfo {
            name: name.to_string(),
            kind: ArtifactKind::Stream,
            size: health.bytes.load(AtomicOrdering::Relaxed),
        };
        self.parts.push(Part {
            info: info.clone(),
            snap,
        });
        Ok(info)
    }

    /// Archive directory (or single file) `path` as tree artifact `name`: contents,
    /// modes, owners, mtimes, symlinks and empty directories, so that `restic
    /// restore` reproduces it. Symlinks inside are stored, not followed; a
    /// `path` that is itself a symlink is refused (callers acting for a module
    /// resolve it beneath its grant first, see `capabilities::fs`).
    ///
    /// # Errors
    ///
    /// [`RepoError::InvalidName`], [`RepoError::ArtifactExists`], [`RepoError::Io`]
    /// if `path` cannot be read; [`RepoError::Failed`] on any walk, open or read
    /// error below it, after which the session cannot commit.
    pub fn add_tree(&mut self, name: &str, path: &Path) -> Result<ArtifactInfo, RepoError> {
        self.check_new_name(name)?;
        let what = format!("archiving tree artifact `{name}` from {}", path.display());
        let root = path.to_path_buf();
        let root_meta = std::fs::symlink_metadata(&root).map_err(|source| RepoError::Io {
            what: what.clone(),
            source,
        })?;
        if root_meta.file_type().is_symlink() {
            return Err(RepoError::Failed {
                what,
                message: "it is a symlink; archive the directory it points to".into(),
            });
        }
        let health = Arc::new(Health::default());
        let src = LocalSource::new(
            LocalSourceSaveOptions::default(),
            &Excludes::default(),
            &LocalSourceFilterOptions::default(),
            &[&root],
        )
        .map_err(failed(what.clone()))?;

        let mut entries: Vec<Entry> = Vec::new();
        let is_dir = root_meta.is_dir();
        if is_dir {
            // the walker skips the root directory itself: emit it as the node `name`
            let mut meta = dir_meta(
                root_meta.mode(),
                root_meta
                    .modified()
                    .ok()
                    .and_then(|t| jiff::Timestamp::try_from(t).ok())
                    .unwrap_or_else(jiff::Timestamp::now),
            );
            meta.uid = Some(root_meta.uid());
            meta.gid = Some(root_meta.gid());
            entries.push(entry(
                name,
                Node::new_node(OsStr::new(name), NodeType::Dir, meta),
                None,
            ));
        }
        let walk = {
            let (name, root, health) = (name.to_string(), root.clone(), health.clone());
            src.entries().filter_map(move |e| match e {
                Err(e) => {
                    health.error(format!("{name}: cannot walk: {}", e.display_log()));
                    None
                }
                Ok(ReadSourceEntry {
                    path,
                    mut node,
                    open,
                }) => {
                    let rel = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
                    let vpath = if rel.as_os_str().is_empty() {
                        // `path` is a single file: it becomes the node `name`
                        node = Node::new_node(OsStr::new(&name), node.node_type, node.meta);
                        PathBuf::from(&name)
                    } else {
                        Path::new(&name).join(&rel)
                    };
                    let open =
                        open.map(|o| Opener::Local(o, vpath.display().to_string(), health.clone()));
                    Some(entry(vpath, node, open))
                }
            })
        };
        let src = OneShot {
            entries: Mutex::new(Some(Box::new(entries.into_iter().chain(walk)))),
        };
        let result = self.archive_source(name, src, self.parent.as_deref());
        self.gate.discard();
        let mut errors = health.errors();
        let snap = match result {
            Ok(snap) if errors.is_empty() => snap,
            other => {
                if let Err(e) = other {
                    errors.insert(0, e.display_log());
                }
                let message = errors.join("; ");
                self.failures.push(format!("{what}: {message}"));
                return Err(RepoError::Failed {
                    what,
                    message: format!("{message} (this run's snapshot cannot be committed)"),
                });
            }
        };
        // Files unchanged since the parent are not read: the summary has the
        // size of every file.
        let read = health.bytes.load(AtomicOrdering::Relaxed);
        let size = snap
            .summary
            .as_ref()
            .map_or(read, |s| s.total_bytes_processed.max(read));
        let info = ArtifactInfo {
            name: name.to_string(),
            kind: ArtifactKind::Tree,
            size,
        };
        self.parts.push(Part {
            info: info.clone(),
            snap,
        });
        Ok(info)
    }

    /// Set a note stored with the snapshot (in `.cairn/manifest.json`).
    pub fn set_note(&mut self, key: &str, value: &str) {
        self.notes.insert(key.to_string(), value.to_string());
    }

    /// The notes set so far.
    pub fn notes(&self) -> BTreeMap<String, String> {
        self.notes.clone()
    }

    /// The artifacts archived so far, in the order they were added.
    pub fn artifacts(&self) -> Vec<ArtifactInfo> {
        self.parts.iter().map(|p| p.info.clone()).collect()
    }

    /// Write the one snapshot holding every artifact and the notes, tagged
    /// `job:<job>`, `task:<task>`, `run:<run_id>`, with the artifact names as
    /// paths: the single commit point of the run.
    ///
    /// # Errors
    ///
    /// [`RepoError::Failed`] if any artifact failed (nothing is written) or if
    /// writing the snapshot fails.
    pub fn commit(self) -> Result<SnapshotInfo, RepoError> {
        let what = format!(
            "committing the snapshot of job `{}` run `{}` to {}",
            self.meta.job,
            self.meta.run_id,
            self.owner.location()
        );
        if !self.failures.is_empty() {
            return Err(RepoError::Failed {
                what,
                message: format!(
                    "nothing was committed because artifacts failed: {}",
                    self.failures.join("; ")
                ),
            });
        }
        let fail = |e: Box<rustic_core::RusticError>| failed(what.clone())(e);
        let Self {
            owner: _,
            repo,
            gate,
            meta,
            started,
            parts,
            notes,
            failures: _,
            parent: _,
            _lock,
        } = self;

        // 1. the internal entries: .cairn/manifest.json
        let mut artifacts: Vec<ArtifactInfo> = parts.iter().map(|p| p.info.clone()).collect();
        artifacts.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = serde_json::to_vec_pretty(&Manifest {
            version: 1,
            artifacts: artifacts.clone(),
            notes,
        })
        .map_err(|e| RepoError::Failed {
            what: what.clone(),
            message: format!("cannot encode the manifest: {e}"),
        })?;
        let now = jiff::Timestamp::now();
        let manifest_node = Node::new_node(
            OsStr::new(MANIFEST_NAME),
            NodeType::File,
            Metadata {
                mode: Some(0o644),
                mtime: Some(now),
                size: manifest.len() as u64,
                ..Default::default()
            },
        );
        let internal_entries = vec![
            entry(
                INTERNAL_DIR,
                Node::new_node(
                    OsStr::new(INTERNAL_DIR),
                    NodeType::Dir,
                    dir_meta(0o755, now),
                ),
                None,
            ),
            entry(
                Path::new(INTERNAL_DIR).join(MANIFEST_NAME),
                manifest_node,
                Some(Opener::Stream(Box::new(std::io::Cursor::new(manifest)))),
            ),
        ];
        let src = OneShot {
            entries: Mutex::new(Some(Box::new(internal_entries.into_iter()))),
        };
        let opts = BackupOptions::default().parent_opts(ParentOptions::default().force(true));
        let internal = repo
            .archive(
                &opts,
                &src,
                SnapshotOptions::default().to_snapshot().map_err(fail)?,
                &[PathBuf::from(INTERNAL_DIR)],
            )
            .map_err(fail)?;
        gate.discard();

        // 2. full index (it now includes this session's packs)
        let repo = repo.drop_index().to_indexed().map_err(fail)?;

        // 3. let repair write the real sizes into the stream parts (only their small
        //    root trees are traversed); it saves one (held) snapshot per part
        let streams: Vec<SnapshotFile> = parts
            .iter()
            .filter(|p| p.info.kind == ArtifactKind::Stream)
            .map(|p| p.snap.clone())
            .collect();
        let mut trees = vec![internal.tree];
        if !streams.is_empty() {
            let repair_opts = RepairSnapshotsOptions::default()
                .delete(false)
                .suffix(String::new())
                .tag(Vec::new());
            repo.repair_snapshots(&repair_opts, streams.clone(), false)
                .map_err(fail)?;
            let held: Vec<String> = gate
                .held_ids()
                .iter()
                .map(|id| id.to_hex().as_str().to_string())
                .collect();
            let repaired = repo.get_snapshots(&held).map_err(fail)?;
            gate.discard();
            for part in &streams {
                let tree = repaired
                    .iter()
                    .find(|r| r.original == Some(part.id))
                    .map(|r| r.tree)
                    .ok_or_else(|| RepoError::Failed {
                        what: what.clone(),
                        message:
                            "rustic's repair pass did not rewrite a stream's tree (internal error)"
                                .into(),
                    })?;
                trees.push(tree);
            }
        }

        // 4. merge everything (distinct root names; the `.cairn` directories merge)
        trees.extend(
            parts
                .iter()
                .filter(|p| p.info.kind == ArtifactKind::Tree)
                .map(|p| p.snap.tree),
        );
        // merging reads the repaired trees: reload the index, which now lists them
        let repo = repo.drop_index().to_indexed_ids().map_err(fail)?;
        let no_conflicts = |_: &Node, _: &Node| Ordering::Equal;
        let root = repo
            .merge_trees(&trees, &no_conflicts, &mut SnapshotSummary::default())
            .map_err(fail)?;

        // 5. the snapshot: written only now
        let tags = format!(
            "{JOB_TAG}{},{TASK_TAG}{},{RUN_TAG}{}",
            meta.job, meta.task, meta.run_id
        );
        let mut snap = SnapshotOptions::default()
            .host(meta.hostname.clone())
            .add_tags(&tags)
            .map_err(fail)?
            .to_snapshot()
            .map_err(fail)?;
        snap.time = started.clone();
        snap.tree = root;
        snap.paths = rustic_core::StringList::default();
        for a in &artifacts {
            snap.paths.add(a.name.clone());
        }
        let end = jiff::Zoned::now();
        let mut summary = SnapshotSummary::default();
        summary.backup_start = started.clone();
        summary.backup_end = end.clone();
        for p in &parts {
            if let Some(s) = &p.snap.summary {
                summary.files_new += s.files_new;
                summary.files_changed += s.files_changed;
                summary.files_unmodified += s.files_unmodified;
                summary.dirs_new += s.dirs_new;
                summary.dirs_changed += s.dirs_changed;
                summary.dirs_unmodified += s.dirs_unmodified;
                summary.total_files_processed += s.total_files_processed;
                summary.total_dirs_processed += s.total_dirs_processed;
                // rustic counts a stream's file as 0 bytes (its size is
                // only known once read): take the bytes read.
                summary.total_bytes_processed += s.total_bytes_processed.max(p.info.size);
                summary.data_blobs += s.data_blobs;
                summary.tree_blobs += s.tree_blobs;
                summary.data_added += s.data_added;
                summary.data_added_packed += s.data_added_packed;
                summary.data_added_files += s.data_added_files;
                summary.data_added_files_packed += s.data_added_files_packed;
                summary.data_added_trees += s.data_added_trees;
                summary.data_added_trees_packed += s.data_added_trees_packed;
            }
        }
        let duration = (end.timestamp().as_millisecond() - started.timestamp().as_millisecond())
            as f64
            / 1000.0;
        summary.backup_duration = duration;
        summary.total_duration = duration;
        summary.command = "cairn backup".into();
        snap.summary = Some(summary);
        repo.save_snapshots(vec![snap.clone()]).map_err(fail)?;
        let ids = gate.held_ids();
        let [id] = ids.as_slice() else {
            return Err(RepoError::Failed {
                what,
                message: format!(
                    "expected one snapshot to write, found {} (internal error)",
                    ids.len()
                ),
            });
        };
        gate.commit().map_err(fail)?;
        snap.id = (*id).into();
        Ok(snapshot_info(&snap))
    }

    /// Discard the session: nothing becomes visible (packs already written are
    /// garbage for `prune`). Same as dropping it.
    pub fn abort(self) {
        self.gate.discard();
    }
}
