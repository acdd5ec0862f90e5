//! Restic-compatible snapshot repository (rustic_core behind Cairn's own types).
//!
//! Everything Cairn stores lives in a restic repository (format version 2, zstd),
//! written through `rustic_core` 0.13 on Cairn's own stores ([`store`]: local, S3, REST).
//! No rustic type crosses this module's boundary, so a version bump touches only
//! this folder.
//!
//! # Layout of a Cairn snapshot
//!
//! One backup run is one snapshot, tagged `job:<job>`, `task:<task>` and `run:<run_id>`.
//! Its root holds one entry per artifact (a file for a stream artifact, a directory
//! or file for a tree artifact) plus the internal `.cairn/` directory:
//!
//! - `.cairn/manifest.json`: the run's notes and every artifact's name, kind and size.
//!
//! rustic records size 0 for files read from a stream, and restic truncates restored
//! files to the recorded size; commit therefore lets rustic's `repair snapshots`
//! rewrite each stream's tree with the real size (see `backup.rs`).
//!
//! The snapshot's `paths` are the artifact names. `restic snapshots`, `restic dump`,
//! `restic restore` and `restic check --read-data` all work on it.
//!
//! # Commit point
//!
//! Data packs and index files are written while a [`BackupSession`] runs; the
//! snapshot file, the only thing that makes them visible, is held back in memory
//! until [`BackupSession::commit`]. A failed, aborted or killed session leaves only
//! unreferenced packs, which [`Repository::prune`] removes.
//!
//! # Where
//!
//! A local directory, an S3 bucket or a REST server ([`store`]); the same
//! code runs on each, and restic reads what Cairn writes on each.
//!
//! # Locking
//!
//! restic's lock files in `locks/` ([`lock`]): backups, restores, checks and
//! copies hold a shared lock, `forget` and `prune` an exclusive one, waiting
//! up to [`DEFAULT_LOCK_TIMEOUT`]. restic honours them, and Cairn honours
//! restic's; processes on several hosts sharing one bucket see each other's.
//!
//! All calls block (rustic starts its own threads); call them from
//! `tokio::task::spawn_blocking`.

mod backup;
mod copy;
mod gate;
mod keyfile;
mod lock;
mod restore;
mod retention;
pub mod store;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use rustic_core::{
    CheckOptions, ConfigOptions, Credentials, KeyOptions, OpenStatus, PruneOptions,
    RepositoryBackends, RepositoryOptions, RusticError,
    repofile::{MasterKey, SnapshotFile},
};

pub use backup::BackupSession;
pub use copy::CopyReport;
pub use restore::{LsEntry, RestoreSession, RestoredTree, check_entry_path};
pub use retention::{Retention, apply_retention};

use gate::GateBackend;
use lock::{LockMode, RepoLock};
use store::{Backend, Store, StoreError, StoreErrorKind};

pub use crate::model::Location;

/// How long `forget`, `prune`, backups and restores wait for a conflicting
/// operation on the same repository before failing with [`RepoError::Busy`].
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Name of the internal directory at the root of every Cairn snapshot.
const INTERNAL_DIR: &str = ".cairn";
/// The manifest inside [`INTERNAL_DIR`].
const MANIFEST_NAME: &str = "manifest.json";
/// Tag prefixes of Cairn snapshots.
const JOB_TAG: &str = "job:";
const TASK_TAG: &str = "task:";
const RUN_TAG: &str = "run:";

/// A restic repository (local, S3 or REST), opened with its password.
///
/// Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct Repository {
    inner: Arc<Inner>,
}

struct Inner {
    location: Location,
    store: Arc<dyn Store>,
    key: MasterKey,
    lock_timeout: Duration,
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.inner.location.to_string())
            .finish_non_exhaustive()
    }
}

/// Who wrote a snapshot: the run that [`Repository::begin_backup`] starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Job name, stored as tag `job:<job>`.
    pub job: String,
    /// Task name, stored as tag `task:<task>`.
    pub task: String,
    /// Run id, stored as tag `run:<run_id>`.
    pub run_id: String,
    /// Host name recorded in the snapshot.
    pub hostname: String,
}

/// A committed Cairn snapshot, as listed by [`Repository::snapshots`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotInfo {
    /// Full snapshot id (64 hex digits).
    pub id: String,
    /// The first 8 hex digits, as restic prints them.
    pub short_id: String,
    /// Snapshot time, RFC 3339 in UTC.
    pub time: String,
    /// Snapshot time in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Value of the `job:` tag.
    pub job: String,
    /// Value of the `task:` tag (empty when missing).
    pub task: String,
    /// Value of the `run:` tag (empty when missing).
    pub run_id: String,
    /// Host name recorded in the snapshot.
    pub hostname: String,
    /// All tags, sorted.
    pub tags: Vec<String>,
    /// The snapshot's paths: the artifact names.
    pub paths: Vec<String>,
    /// What the backup found and added (restic's summary), when the
    /// snapshot has one.
    pub summary: Option<BackupSummary>,
}

/// What one backup read and added, as restic's `backup` summary says it:
/// files and directories new, changed and unchanged since the job's previous
/// snapshot (a stream artifact is always a new file), bytes read, bytes added
/// to the repository.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct BackupSummary {
    /// Files not in the previous snapshot (and every stream).
    pub files_new: u64,
    /// Files in the previous snapshot whose content changed.
    pub files_changed: u64,
    /// Files in the previous snapshot, unchanged.
    pub files_unmodified: u64,
    /// Directories not in the previous snapshot.
    pub dirs_new: u64,
    /// Directories whose entries changed.
    pub dirs_changed: u64,
    /// Directories unchanged.
    pub dirs_unmodified: u64,
    /// Files read (or found unchanged).
    pub total_files_processed: u64,
    /// Bytes of those files: the snapshot's size.
    pub total_bytes_processed: u64,
    /// Bytes of new blobs added to the repository, before compression.
    pub data_added: u64,
    /// The same, as stored (compressed).
    pub data_added_packed: u64,
    /// Seconds from the start of the backup to its commit.
    pub duration_secs: f64,
}

impl BackupSummary {
    fn from_rustic(s: &rustic_core::repofile::SnapshotSummary) -> Self {
        Self {
            files_new: s.files_new,
            files_changed: s.files_changed,
            files_unmodified: s.files_unmodified,
            dirs_new: s.dirs_new,
            dirs_changed: s.dirs_changed,
            dirs_unmodified: s.dirs_unmodified,
            total_files_processed: s.total_files_processed,
            total_bytes_processed: s.total_bytes_processed,
            data_added: s.data_added,
            data_added_packed: s.data_added_packed,
            duration_secs: s.backup_duration,
        }
    }
}

/// What an artifact holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// Bytes read from a stream, stored as one file.
    Stream,
    /// A directory tree (or one file) read from the local file system.
    Tree,
}

impl fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArtifactKind::Stream => "stream",
            ArtifactKind::Tree => "tree",
        })
    }
}

/// One artifact of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArtifactInfo {
    /// Name: the entry at the snapshot root.
    pub name: String,
    /// Stream or tree.
    pub kind: ArtifactKind,
    /// Bytes of content (for a tree: the sum of its regular files).
    pub size: u64,
}

/// Outcome of [`Repository::forget`], both lists oldest first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForgetReport {
    /// Snapshots kept.
    pub kept: Vec<SnapshotInfo>,
    /// Snapshots removed (or that would be, when `dry_run`).
    pub removed: Vec<SnapshotInfo>,
    /// Whether nothing was actually removed.
    pub dry_run: bool,
}

/// Outcome of [`Repository::prune`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct PruneReport {
    /// Pack files deleted.
    pub packs_removed: u64,
    /// Bytes of blobs removed (best effort: rustic's plan statistics).
    pub bytes_removed: u64,
}

/// Outcome of [`Repository::check`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// Problems that affect the repository's integrity.
    pub errors: Vec<String>,
    /// Oddities that do not (e.g. unreferenced packs left by an interrupted run).
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// True when no errors were found (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Everything that can go wrong in this module. Each message says what failed,
/// on what, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// No repository (no `config` file) at the location.
    #[error(
        "no repository at {location}: create it with `cairn init`, or fix the repository location"
    )]
    NotInitialised {
        /// Where.
        location: String,
    },
    /// `init` where a repository already is.
    #[error(
        "a repository already exists at {location}: use it as it is, or choose another location"
    )]
    AlreadyInitialised {
        /// Where.
        location: String,
    },
    /// `init` on a location that is neither missing, empty, nor a repository.
    #[error("cannot create a repository at {location}: {why}; choose a missing or empty location")]
    NotEmpty {
        /// Where.
        location: String,
        /// What is in the way.
        why: String,
    },
    /// No key of the repository opens with the password.
    #[error(
        "wrong password for the repository at {location}: check the password configured for it"
    )]
    WrongPassword {
        /// Where.
        location: String,
    },
    /// The repository could not be read (permissions, credentials, network).
    #[error("cannot read the repository at {location}: {message}")]
    Unreadable {
        /// Where.
        location: String,
        /// Why, as the store said it.
        message: String,
    },
    /// Another process (Cairn or restic) holds a conflicting lock.
    #[error(
        "repository {location} is busy: {holder} has held a conflicting lock for more than {}s: retry later",
        .waited.as_secs()
    )]
    Busy {
        /// Where.
        location: String,
        /// Who holds the lock, as its lock file says.
        holder: String,
        /// How long we waited.
        waited: Duration,
    },
    /// No snapshot of this job matches the id.
    #[error("job `{job}` has no snapshot `{id}`: list its snapshots to find the right id")]
    NoSuchSnapshot {
        /// Job name.
        job: String,
        /// The id asked for.
        id: String,
    },
    /// Several snapshots of the job start with the id.
    #[error("snapshot id `{id}` matches {} snapshots of job `{job}` ({}): give more digits", .candidates.len(), .candidates.join(", "))]
    AmbiguousSnapshot {
        /// Job name.
        job: String,
        /// The prefix asked for.
        id: String,
        /// Short ids of the matches.
        candidates: Vec<String>,
    },
    /// The snapshot has no artifact of that name.
    #[error(
        "snapshot {snapshot} has no artifact `{name}`: list its artifacts to find the right name"
    )]
    NoSuchArtifact {
        /// Artifact name.
        name: String,
        /// Short snapshot id.
        snapshot: String,
    },
    /// The artifact exists but is of the other kind.
    #[error(
        "artifact `{name}` is not a {expected} artifact: use the {expected} operation only on {expected}s"
    )]
    WrongKind {
        /// Artifact name.
        name: String,
        /// The kind the operation needs.
        expected: ArtifactKind,
    },
    /// A session already has an artifact of that name.
    #[error(
        "this backup already has an artifact `{name}`: give each artifact of a run its own name"
    )]
    ArtifactExists {
        /// Artifact name.
        name: String,
    },
    /// The artifact name is not allowed.
    #[error("invalid artifact name `{name}`: {why}")]
    InvalidName {
        /// Artifact name.
        name: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// A repository operation failed.
    #[error("{what} failed: {message}")]
    Failed {
        /// What was being done, on what.
        what: String,
        /// The cause.
        message: String,
    },
    /// A local I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, on what.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Wrap a rustic error as [`RepoError::Failed`].
fn failed(what: impl Into<String>) -> impl FnOnce(Box<RusticError>) -> RepoError {
    let what = what.into();
    move |e| RepoError::Failed {
        what,
        message: e.display_log(),
    }
}

/// Check an artifact name: `[A-Za-z0-9._-]+`, not starting with `.` or `-`
/// (`.` is reserved, and the name must sort after `.cairn`).
/// Check that `name` can name an artifact: letters, digits, `.`, `_` and
/// `-`, at most 255 bytes, not starting with `.` or `-`.
///
/// # Errors
/// [`RepoError::InvalidName`] saying why.
pub fn validate_name(name: &str) -> Result<(), RepoError> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.starts_with(['.', '-']) {
        "names start with a letter, a digit or `_`"
    } else if name.len() > 255 {
        "it is longer than 255 bytes"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "use only letters, digits, `.`, `_` and `-`"
    } else {
        return Ok(());
    };
    Err(RepoError::InvalidName {
        name: name.to_string(),
        why,
    })
}

/// A rustic repository over our commit gate.
type Rustic = rustic_core::Repository<OpenStatus>;

/// rustic's backends over `store`, with writes of snapshot files going
/// through a fresh gate.
fn backends(store: &Arc<dyn Store>) -> (RepositoryBackends, Arc<GateBackend>) {
    let gate = Arc::new(GateBackend::new(Arc::new(Backend::new(store.clone()))));
    (RepositoryBackends::new(gate.clone(), None), gate)
}

fn repo_options() -> RepositoryOptions {
    RepositoryOptions::default().no_cache(true)
}

/// A store failure while doing `what` at `location`, as a [`RepoError`].
fn store_failed(location: &Location, e: StoreError) -> RepoError {
    match e.kind {
        StoreErrorKind::Denied | StoreErrorKind::ReadOnly => RepoError::Unreadable {
            location: location.to_string(),
            message: e.message,
        },
        _ => RepoError::Failed {
            what: format!("using the repository at {location}"),
            message: e.message,
        },
    }
}

/// Whether the store holds a restic `config` file.
fn has_config(location: &Location, store: &dyn Store) -> Result<bool, RepoError> {
    match store.size("config") {
        Ok(found) => Ok(found.is_some()),
        Err(e) if e.kind == StoreErrorKind::NotFound => Ok(false),
        Err(e) => Err(store_failed(location, e)),
    }
}

fn open_store(location: &Location) -> Result<Arc<dyn Store>, RepoError> {
    store::open(location).map_err(|e| store_failed(location, e))
}

impl Repository {
    /// Open an existing repository.
    ///
    /// Nothing is written: no cache, no lock files.
    ///
    /// # Errors
    ///
    /// [`RepoError::NotInitialised`] when there is no repository (a missing
    /// directory is not created), [`RepoError::WrongPassword`],
    /// [`RepoError::Unreadable`] or [`RepoError::Failed`] when it cannot be read.
    pub fn open(location: &Location, password: &str) -> Result<Self, RepoError> {
        let store = open_store(location)?;
        if !has_config(location, store.as_ref())? {
            return Err(RepoError::NotInitialised {
                location: location.to_string(),
            });
        }
        let (be, _gate) = backends(&store);
        let what = format!("opening the repository at {location}");
        let repo = rustic_core::Repository::new(&repo_options(), &be)
            .map_err(failed(what.clone()))?
            .open(&Credentials::password(password))
            .map_err(|e| {
                if e.is_incorrect_password() {
                    RepoError::WrongPassword {
                        location: location.to_string(),
                    }
                } else {
                    failed(what)(e)
                }
            })?;
        Ok(Self::from_key(location, store, repo.key()))
    }

    /// Create a new repository (restic format version 2, zstd compression).
    ///
    /// A local directory may exist if it is empty; a bucket is created if
    /// missing; a prefix must hold nothing.
    ///
    /// # Errors
    ///
    /// [`RepoError::AlreadyInitialised`] if a repository exists there,
    /// [`RepoError::NotEmpty`] if the location holds something else,
    /// [`RepoError::Io`] / [`RepoError::Failed`] if creating it fails (what
    /// this call wrote is removed again).
    pub fn init(location: &Location, password: &str) -> Result<Self, RepoError> {
        let store = open_store(location)?;
        if has_config(location, store.as_ref())? {
            return Err(RepoError::AlreadyInitialised {
                location: location.to_string(),
            });
        }
        let empty = store.is_empty().map_err(|e| match e.kind {
            StoreErrorKind::Other => RepoError::NotEmpty {
                location: location.to_string(),
                why: e.message.clone(),
            },
            _ => store_failed(location, e),
        })?;
        if !empty {
            return Err(RepoError::NotEmpty {
                location: location.to_string(),
                why: "it is not empty and holds no repository".into(),
            });
        }
        let created_dir = match location {
            Location::Local(path) => !path.exists(),
            _ => false,
        };
        let result = (|| {
            let (be, _gate) = backends(&store);
            let what = format!("initialising a repository at {location}");
            let config = ConfigOptions::default()
                .set_version(2u32)
                .set_compression(3i32);
            let repo = rustic_core::Repository::new(&repo_options(), &be)
                .map_err(failed(what.clone()))?
                .init(
                    &Credentials::password(password),
                    &KeyOptions::default(),
                    &config,
                )
                .map_err(failed(what.clone()))?;
            let key = repo.key();
            drop(repo);
            keyfile::rewrite_with_restic_cost(store.as_ref(), password, &key).map_err(|e| {
                RepoError::Failed {
                    what,
                    message: format!("{e:#}"),
                }
            })?;
            Ok(Self::from_key(location, store.clone(), key))
        })();
        if result.is_err() {
            // Leave nothing behind.
            match location {
                Location::Local(path) if created_dir => {
                    let _ = std::fs::remove_dir_all(path);
                }
                Location::Local(path) => {
                    if let Ok(entries) = std::fs::read_dir(path) {
                        for e in entries.flatten() {
                            let _ = std::fs::remove_dir_all(e.path())
                                .or_else(|_| std::fs::remove_file(e.path()));
                        }
                    }
                }
                _ => {
                    let _ = store.remove("config");
                    for (name, _) in store.list("keys").unwrap_or_default() {
                        let _ = store.remove(&format!("keys/{name}"));
                    }
                }
            }
        }
        result
    }

    /// Open the repository, or create it when the location is missing or
    /// empty. Returns the repository and whether it was created.
    ///
    /// # Errors
    ///
    /// As [`Repository::open`] and [`Repository::init`].
    pub fn open_or_init(location: &Location, password: &str) -> Result<(Self, bool), RepoError> {
        let store = open_store(location)?;
        if !has_config(location, store.as_ref())?
            && store.is_empty().map_err(|e| store_failed(location, e))?
        {
            return Ok((Self::init(location, password)?, true));
        }
        Ok((Self::open(location, password)?, false))
    }

    fn from_key(location: &Location, store: Arc<dyn Store>, key: MasterKey) -> Self {
        Self {
            inner: Arc::new(Inner {
                location: location.clone(),
                store,
                key,
                lock_timeout: DEFAULT_LOCK_TIMEOUT,
            }),
        }
    }

    /// The same repository, waiting at most `timeout` for the repository lock.
    #[must_use]
    pub fn with_lock_timeout(self, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                location: self.inner.location.clone(),
                store: self.inner.store.clone(),
                key: self.inner.key.clone(),
                lock_timeout: timeout,
            }),
        }
    }

    /// Where the repository is.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// The lock files in the repository, described (`an exclusive lock by
    /// root@host (pid 42) since …`; `stale` when it is ignored).
    ///
    /// # Errors
    /// When they cannot be listed.
    pub fn locks(&self) -> Result<Vec<String>, RepoError> {
        Ok(
            lock::list_locks(self.inner.store.as_ref(), &self.inner.key)?
                .into_iter()
                .map(|(path, info)| match info {
                    Some(info) => format!("{path}: {}", info.describe()),
                    None => format!("{path}: unreadable"),
                })
                .collect(),
        )
    }

    /// The directory of a local repository.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        match &self.inner.location {
            Location::Local(path) => Some(path),
            _ => None,
        }
    }

    /// A fresh rustic handle (own gate) opened with the master key.
    fn rustic(&self) -> Result<(Rustic, Arc<GateBackend>), RepoError> {
        let location = self.location();
        if !has_config(location, self.inner.store.as_ref())? {
            return Err(RepoError::NotInitialised {
                location: location.to_string(),
            });
        }
        let (be, gate) = backends(&self.inner.store);
        let what = format!("opening the repository at {location}");
        let repo = rustic_core::Repository::new(&repo_options(), &be)
            .map_err(failed(what.clone()))?
            .open(&Credentials::Masterkey(self.inner.key.clone()))
            .map_err(failed(what))?;
        Ok((repo, gate))
    }

    /// A lock of `mode`; `read_only_ok` for operations that only read (they
    /// go ahead unlocked where no lock can be written).
    fn lock(&self, mode: LockMode, read_only_ok: bool) -> Result<RepoLock, RepoError> {
        RepoLock::acquire(
            &self.inner.store,
            &self.inner.key,
            mode,
            self.inner.lock_timeout,
            read_only_ok,
        )
    }

    /// Start the one snapshot of a backup run. Nothing becomes visible until
    /// [`BackupSession::commit`]. The session holds a shared repository lock
    /// (so `prune` waits for it) until it is committed, aborted or dropped.
    ///
    /// # Errors
    ///
    /// [`RepoError::Busy`] while a prune or forget runs for longer than the lock
    /// timeout; [`RepoError::Failed`] if the repository cannot be opened or indexed.
    pub fn begin_backup(&self, meta: SnapshotMeta) -> Result<BackupSession, RepoError> {
        let lock = self.lock(LockMode::Shared, false)?;
        let (repo, gate) = self.rustic()?;
        BackupSession::new(self.clone(), repo, gate, meta, lock)
    }

    /// Cairn snapshots (those with a `job:` tag), oldest first; only those of
    /// `job` when given.
    ///
    /// # Errors
    ///
    /// [`RepoError::Failed`] if the snapshot files cannot be read.
    pub fn snapshots(&self, job: Option<&str>) -> Result<Vec<SnapshotInfo>, RepoError> {
        let (repo, _) = self.rustic()?;
        Ok(self
            .snapshot_files(&repo, job)?
            .iter()
            .map(snapshot_info)
            .collect())
    }

    fn snapshot_files(
        &self,
        repo: &Rustic,
        job: Option<&str>,
    ) -> Result<Vec<SnapshotFile>, RepoError> {
        let wanted = job.map(|j| format!("{JOB_TAG}{j}"));
        let mut snaps = repo
            .get_matching_snapshots(|sn| match &wanted {
                Some(tag) => sn.tags.contains(tag),
                None => sn.tags.iter().any(|t| t.starts_with(JOB_TAG)),
            })
            .map_err(failed(format!("listing snapshots in {}", self.location())))?;
        snaps.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        Ok(snaps)
    }

    fn find_snapshot_file(
        &self,
        repo: &Rustic,
        job: &str,
        id: &str,
    ) -> Result<SnapshotFile, RepoError> {
        let not_found = || RepoError::NoSuchSnapshot {
            job: job.to_string(),
            id: id.to_string(),
        };
        let mut snaps = self.snapshot_files(repo, Some(job))?;
        if id == "latest" {
            return snaps.pop().ok_or_else(not_found);
        }
        let id_lc = id.to_ascii_lowercase();
        if id_lc.len() < 4 || id_lc.len() > 64 || !id_lc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let mut matches: Vec<SnapshotFile> = snaps
            .into_iter()
            .filter(|s| s.id.to_hex().as_str().starts_with(&id_lc))
            .collect();
        match matches.len() {
            0 => Err(not_found()),
            1 => Ok(matches.remove(0)),
            _ => Err(RepoError::AmbiguousSnapshot {
                job: job.to_string(),
                id: id.to_string(),
                candidates: matches.iter().map(|s| snapshot_info(s).short_id).collect(),
            }),
        }
    }

    /// Find one snapshot of `job`: `id` is a full id, a unique prefix of at least
    /// 4 hex digits, or `latest`.
    ///
    /// # Errors
    ///
    /// [`RepoError::NoSuchSnapshot`] (also when the id belongs to another job),
    /// [`RepoError::AmbiguousSnapshot`], [`RepoError::Failed`].
    pub fn find_snapshot(&self, job: &str, id: &str) -> Result<SnapshotInfo, RepoError> {
        let (repo, _) = self.rustic()?;
        Ok(snapshot_info(&self.find_snapshot_file(&repo, job, id)?))
    }

    /// Open a snapshot for reading its artifacts. Loads the repository index and
    /// holds a shared lock (so `prune` cannot move data away meanwhile).
    ///
    /// # Errors
    ///
    /// [`RepoError::NoSuchSnapshot`] if it no longer exists, [`RepoError::Busy`],
    /// [`RepoError::Failed`].
    pub fn open_restore(&self, snapshot: &SnapshotInfo) -> Result<RestoreSession, RepoError> {
        let lock = self.lock(LockMode::Shared, true)?;
        let (repo, _) = self.rustic()?;
        let snap = self.find_snapshot_file(&repo, &snapshot.job, &snapshot.id)?;
        RestoreSession::new(self, repo, snap, lock)
    }

    /// Apply keep rules to the snapshots of `job` (all of them form one group) and
    /// remove the others, unless `dry_run`. The newest snapshot of the job is
    /// always kept; an empty [`Retention`] keeps everything. Takes the exclusive
    /// lock.
    ///
    /// # Errors
    ///
    /// [`RepoError::Busy`], [`RepoError::Failed`].
    pub fn forget(
        &self,
        job: &str,
        keep: &Retention,
        dry_run: bool,
    ) -> Result<ForgetReport, RepoError> {
        let _lock = self.lock(LockMode::Exclusive, false)?;
        let (repo, _) = self.rustic()?;
        let snaps = self.snapshot_files(&repo, Some(job))?;
        let times: Vec<jiff::Timestamp> = snaps.iter().map(|s| s.time.timestamp()).collect();
        let keep_idx: std::collections::BTreeSet<usize> =
            retention::keep_indices(&snaps, keep)?.into_iter().collect();
        let (mut kept, mut removed) = (Vec::new(), Vec::new());
        let newest = times
            .iter()
            .enumerate()
            .max_by_key(|(_, t)| **t)
            .map(|(i, _)| i);
        let mut remove_ids = Vec::new();
        for (i, s) in snaps.iter().enumerate() {
            if keep_idx.contains(&i) || Some(i) == newest {
                kept.push(snapshot_info(s));
            } else {
                removed.push(snapshot_info(s));
                remove_ids.push(s.id);
            }
        }
        if !dry_run && !remove_ids.is_empty() {
            repo.delete_snapshots(&remove_ids).map_err(failed(format!(
                "removing {} snapshots of job `{job}` from {}",
                remove_ids.len(),
                self.location()
            )))?;
        }
        Ok(ForgetReport {
            kept,
            removed,
            dry_run,
        })
    }

    /// Remove the snapshots of `job` whose full ids are in `ids` (a plan made
    /// by [`Repository::forget`] with `dry_run`, less those to keep after
    /// all); ids that no longer exist are skipped. Returns the snapshots
    /// removed, oldest first. Takes the exclusive lock.
    ///
    /// # Errors
    ///
    /// [`RepoError::Busy`], [`RepoError::Failed`].
    pub fn forget_snapshots(
        &self,
        job: &str,
        ids: &[String],
    ) -> Result<Vec<SnapshotInfo>, RepoError> {
        let _lock = self.lock(LockMode::Exclusive, false)?;
        let (repo, _) = self.rustic()?;
        let chosen: Vec<SnapshotFile> = self
            .snapshot_files(&repo, Some(job))?
            .into_iter()
            .filter(|s| ids.iter().any(|id| id.as_str() == s.id.to_hex().as_str()))
            .collect();
        if !chosen.is_empty() {
            let remove: Vec<_> = chosen.iter().map(|s| s.id).collect();
            repo.delete_snapshots(&remove).map_err(failed(format!(
                "removing {} snapshots of job `{job}` from {}",
                remove.len(),
                self.location()
            )))?;
        }
        Ok(chosen.iter().map(snapshot_info).collect())
    }

    /// Remove data no snapshot references. Takes the exclusive lock, so it waits
    /// for running backups and restores.
    ///
    /// # Errors
    ///
    /// [`RepoError::Busy`], [`RepoError::Failed`].
    pub fn prune(&self) -> Result<PruneReport, RepoError> {
        let _lock = self.lock(LockMode::Exclusive, false)?;
        let (repo, _) = self.rustic()?;
        let what = format!("pruning {}", self.location());
        let opts = PruneOptions::default().instant_delete(true);
        let plan = repo.prune_plan(&opts).map_err(failed(what.clone()))?;
        let stats = &plan.stats;
        let size = stats.size_sum();
        let report = PruneReport {
            // unused packs, repacked packs, and packs marked for deletion earlier
            packs_removed: stats.packs.unused + stats.packs.repack + stats.packs_to_delete.remove,
            bytes_removed: size.remove + size.repackrm + stats.size_to_delete.remove,
        };
        repo.prune(&opts, plan).map_err(failed(what))?;
        Ok(report)
    }

    /// Check the repository's structure, and all data when `read_data`.
    /// Problems found are returned in the report, not as an error.
    ///
    /// # Errors
    ///
    /// [`RepoError::Busy`], or [`RepoError::Failed`] if the check cannot run.
    pub fn check(&self, read_data: bool) -> Result<CheckReport, RepoError> {
        self.check_data(read_data.then_some("all"))
    }

    /// Check the repository's structure and, with `subset`, read data as
    /// restic's `--read-data-subset` says: `all`, `N%`, `n/m` (the n-th of m
    /// groups of packs) or a size (`500MiB`, packs chosen at random).
    ///
    /// # Errors
    ///
    /// [`RepoError::Failed`] for a subset that does not parse (saying the
    /// forms), [`RepoError::Busy`], or when the check cannot run.
    pub fn check_data(&self, subset: Option<&str>) -> Result<CheckReport, RepoError> {
        let mut opts = CheckOptions::default();
        if let Some(subset) = subset {
            let parsed: rustic_core::ReadSubsetOption =
                subset.parse().map_err(|_| RepoError::Failed {
                    what: format!("checking {}", self.location()),
                    message: format!(
                        "`{subset}` is not a data subset: use `all`, a percentage (`10%`), `n/m` \
                     (`1/5` … `5/5` cover all packs) or a size (`500MiB`)"
                    ),
                })?;
            opts = opts.read_data(true).read_data_subset(parsed);
        }
        let _lock = self.lock(LockMode::Shared, true)?;
        let (repo, _) = self.rustic()?;
        let res = repo
            .check(opts)
            .map_err(failed(format!("checking {}", self.location())))?;
        let mut report = CheckReport::default();
        for (level, err) in res.0 {
            // `CheckErrorLevel` is not exported by rustic_core 0.13: tell levels apart by name
            if format!("{level:?}") == "Warn" {
                report.warnings.push(err.to_string());
            } else {
                report.errors.push(err.to_string());
            }
        }
        Ok(report)
    }
}

/// Convert a rustic snapshot to ours.
fn snapshot_info(s: &SnapshotFile) -> SnapshotInfo {
    let id = s.id.to_hex().as_str().to_string();
    let tags: Vec<String> = s.tags.iter().cloned().collect();
    let tag = |prefix: &str| {
        tags.iter()
            .find_map(|t| t.strip_prefix(prefix))
            .unwrap_or_default()
            .to_string()
    };
    let ts = s.time.timestamp();
    SnapshotInfo {
        short_id: id.chars().take(8).collect(),
        id,
        time: ts.to_string(),
        time_ms: ts.as_millisecond(),
        job: tag(JOB_TAG),
        task: tag(TASK_TAG),
        run_id: tag(RUN_TAG),
        hostname: s.hostname.clone(),
        paths: s.paths.iter().cloned().collect(),
        tags,
        summary: s.summary.as_ref().map(BackupSummary::from_rustic),
    }
}

/// The manifest stored as `.cairn/manifest.json`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Manifest {
    version: u32,
    artifacts: Vec<ArtifactInfo>,
    notes: BTreeMap<String, String>,
}
