//! `cairn:plugin/storage`: artifacts of the current run's snapshot.
//!
//! A backup run writes into one [`BackupSession`] (committed by the runner
//! only if the task succeeds); a restore run reads one snapshot through a
//! [`RestoreSession`]; a task's `forget` hook only sees a snapshot's notes
//! and artifact list. Bulk bytes stay host-side: a command's stdout is piped
//! straight into the repository, an artifact straight into a command's
//! stdin, and directory trees are read and written by the host beneath the
//! job's path grants ([`super::fs`]). Bytes a module writes itself go
//! through a small bounded channel, so memory stays bounded whatever the
//! size. Repository calls are blocking and run on the blocking pool.
//!
//! Liveness: the session is locked only by blocking work that holds the one
//! stream slot, never by a call on the async side; what a module may ask
//! while a stream is open (the artifacts so far, the notes) is kept beside
//! the session, and what needs the session fails at once with `invalid`.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use super::bindings::interfaces::shell::{Command, Output};
use super::bindings::interfaces::storage::{
    self, Artifact, ArtifactKind, Host, HostReader, HostWriter,
};
use super::fs::{self, Beneath, FsError, Staging};
use super::log::RunLog;
use super::process::Tree;
use super::progress::{Progress, ProgressSink};
use super::redact::Redactor;
use super::secrets::SecretValues;
use super::shell::{self, DEFAULT_TIMEOUT, Prepared, ShellError, ShellGrant, read_capped};
use super::{Capability, HostError, HostResult, HostShared, RunContext, WitError};
use crate::model::Access;
use crate::repository::{
    ArtifactInfo, ArtifactKind as RepoKind, BackupSession, RepoError, RestoreSession, validate_name,
};
use crate::units::format_size;

/// Bytes handed to the repository per chunk when a module writes a stream.
const CHANNEL_DEPTH: usize = 16;
/// Largest single `reader.read` answered.
const MAX_READ: u64 = 4 << 20;
/// Longest note key.
const MAX_NOTE_KEY: usize = 256;

/// Why a `storage` call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Not possible in this run (a write during a restore, no repository).
    #[error("{0}")]
    Unsupported(String),
    /// A path the module named cannot be used (not granted, a symlink, missing …).
    #[error(transparent)]
    Path(#[from] FsError),
    /// The request is malformed (a bad name, a second open stream).
    #[error("{0}")]
    Invalid(String),
    /// A limit of the job was reached.
    #[error("{0}")]
    Limit(String),
    /// What was asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The repository refused or failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The command was refused or failed.
    #[error(transparent)]
    Shell(#[from] ShellError),
    /// Anything else that failed on the way.
    #[error("{0}")]
    Failed(String),
}

impl From<StorageError> for WitError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Shell(e) => e.into(),
            StorageError::Path(e) => e.into(),
            StorageError::Repo(RepoError::NoSuchArtifact { .. }) | StorageError::NotFound(_) => {
                Self::NotFound(e.to_string())
            }
            StorageError::Repo(
                RepoError::InvalidName { .. }
                | RepoError::ArtifactExists { .. }
                | RepoError::WrongKind { .. },
            )
            | StorageError::Invalid(_) => Self::Invalid(e.to_string()),
            StorageError::Unsupported(_) => Self::Unsupported(e.to_string()),
            StorageError::Limit(_) => Self::Limit(e.to_string()),
            StorageError::Repo(_) | StorageError::Failed(_) => Self::Failed(e.to_string()),
        }
    }
}

impl From<StorageError> for HostError {
    fn from(e: StorageError) -> Self {
        WitError::from(e).into()
    }
}

/// What storage a run has.
#[derive(Clone)]
pub enum StorageMode {
    /// No repository (or a describe call): every call is `unsupported` with this reason.
    Unavailable(String),
    /// A backup run writing one snapshot.
    Backup(Arc<Mutex<BackupSession>>),
    /// A restore run reading one snapshot.
    Restore(Arc<RestoreSession>),
    /// A `forget` hook: reading one snapshot's notes and artifacts only.
    Forget(Arc<RestoreSession>),
}

/// Run-wide storage state shared by the task's store and its Function stores.
#[derive(Clone)]
pub struct RunStorage {
    mode: StorageMode,
    /// A stream artifact is being written (only one at a time), or the
    /// session is otherwise busy (a tree being added).
    streaming: Arc<AtomicBool>,
    /// Artifacts written so far (a backup's list, without the session).
    written: Arc<Mutex<Vec<ArtifactInfo>>>,
    /// Notes set so far (a backup's, without the session).
    notes: Arc<Mutex<BTreeMap<String, String>>>,
    /// Streams (readers and writers) open now.
    open: Arc<AtomicU32>,
    /// Bytes written or restored so far.
    bytes: Arc<AtomicU64>,
    /// Bytes moved so far, for live progress (counted as they flow).
    moved: Arc<AtomicU64>,
    /// The `moved` value last reported.
    reported: Arc<AtomicU64>,
    /// Where byte progress goes, and the job it is for.
    progress: Option<(Arc<str>, ProgressSink)>,
}

/// Report byte progress at most once per this many bytes.
const PROGRESS_STEP: u64 = 1 << 20;

impl RunStorage {
    /// Storage of one run.
    pub fn new(mode: StorageMode) -> Self {
        Self {
            mode,
            streaming: Arc::new(AtomicBool::new(false)),
            written: Arc::default(),
            notes: Arc::default(),
            open: Arc::new(AtomicU32::new(0)),
            bytes: Arc::new(AtomicU64::new(0)),
            moved: Arc::new(AtomicU64::new(0)),
            reported: Arc::new(AtomicU64::new(0)),
            progress: None,
        }
    }

    /// Report bytes moved for `job` to `sink` as they flow (progress bar, plain lines).
    pub fn with_progress(mut self, job: &str, sink: ProgressSink) -> Self {
        self.progress = Some((job.into(), sink));
        self
    }

    /// Count `n` more bytes moved; report progress every [`PROGRESS_STEP`]
    /// and at the end of a stream (`n == 0`), never the same value twice.
    fn advance(&self, n: u64) {
        let before = self.moved.fetch_add(n, Ordering::Relaxed);
        let after = before + n;
        if let Some((job, sink)) = &self.progress
            && (before / PROGRESS_STEP != after / PROGRESS_STEP || n == 0)
            && self.reported.fetch_max(after, Ordering::Relaxed) < after
        {
            sink(
                job,
                Progress {
                    done: after,
                    total: None,
                    bytes: true,
                },
            );
        }
    }

    /// No storage, for this reason.
    pub fn unavailable(reason: &str) -> Self {
        Self::new(StorageMode::Unavailable(reason.to_string()))
    }

    /// The backup session, with the notes the run set, for commit, once no
    /// store holds it any more; `Ok(None)` when this is not a backup.
    ///
    /// # Errors
    /// When a store still shares the session (a bug: commit must not race a writer).
    pub fn take_backup(self) -> anyhow::Result<Option<BackupSession>> {
        let notes = std::mem::take(&mut *self.notes.lock().unwrap());
        match self.mode {
            StorageMode::Backup(s) => {
                let mut session = Arc::try_unwrap(s)
                    .map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "the snapshot is still in use by a module; not committing it"
                        )
                    })?;
                for (key, value) in notes {
                    session.set_note(&key, &value);
                }
                Ok(Some(session))
            }
            _ => Ok(None),
        }
    }

    /// Bytes written (backup) or restored so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A stream artifact being written by the module (host side of `storage.writer`).
pub struct Writer {
    name: String,
    tx: Option<tokio::sync::mpsc::Sender<Result<Vec<u8>, String>>>,
    done: Option<tokio::task::JoinHandle<Result<ArtifactInfo, RepoError>>>,
    _open: OpenStream,
}

/// A stream artifact being read by the module (host side of `storage.reader`).
pub struct Reader {
    inner: Arc<Mutex<Box<dyn Read + Send>>>,
    _open: OpenStream,
}

/// Counts an open stream against the run's `open-streams` until dropped.
struct OpenStream(Arc<AtomicU32>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The `storage` capability of one store.
pub struct StorageCap {
    job: String,
    run: RunStorage,
    table: ResourceTable,
    shell: ShellGrant,
    output_cap: u64,
    result_cap: u64,
    max_open: u32,
    secrets: Arc<SecretValues>,
    log: RunLog,
}

impl Capability for StorageCap {
    const INTERFACE: &'static str = "cairn:plugin/storage";

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()> {
        storage::add_to_linker::<T, HasSelf<Self>>(linker, get)
    }

    /// The run's snapshot, under the job's path and program grants.
    fn prepare(run: &RunContext, _host: &HostShared) -> anyhow::Result<Self> {
        Ok(Self {
            job: run.job.clone(),
            run: run.storage.clone(),
            table: ResourceTable::new(),
            shell: ShellGrant {
                grants: run.grants.clone(),
            },
            output_cap: run.limits.output,
            result_cap: run.limits.result,
            max_open: run.limits.open_streams,
            secrets: run.secrets.clone(),
            log: run.log.clone(),
        })
    }

    fn redactor(&self) -> Option<&Redactor> {
        Some(self.log.redactor())
    }
}

impl StorageCap {
    fn backup(&self) -> Result<Arc<Mutex<BackupSession>>, StorageError> {
        match &self.run.mode {
            StorageMode::Backup(s) => Ok(s.clone()),
            StorageMode::Restore(_) => Err(StorageError::Unsupported(
                "this is a restore run: artifacts can only be read".into(),
            )),
            StorageMode::Forget(_) => Err(forget_only()),
            StorageMode::Unavailable(why) => Err(StorageError::Unsupported(why.clone())),
        }
    }

    fn restore(&self) -> Result<Arc<RestoreSession>, StorageError> {
        match &self.run.mode {
            StorageMode::Restore(s) => Ok(s.clone()),
            StorageMode::Forget(_) => Err(forget_only()),
            StorageMode::Backup(_) => Err(StorageError::Unsupported(
                "this is a backup run: there is no snapshot to read yet".into(),
            )),
            StorageMode::Unavailable(why) => Err(StorageError::Unsupported(why.clone())),
        }
    }

    /// The snapshot to read artifacts from: a restore's, or a forget hook's.
    fn readable(&self) -> Result<Arc<RestoreSession>, StorageError> {
        match &self.run.mode {
            StorageMode::Restore(s) | StorageMode::Forget(s) => Ok(s.clone()),
            StorageMode::Backup(_) => Err(StorageError::Unsupported(
                "this is a backup run: there is no snapshot to read yet".into(),
            )),
            StorageMode::Unavailable(why) => Err(StorageError::Unsupported(why.clone())),
        }
    }

    /// The job's path grants, for host-side access.
    fn beneath(&self) -> Beneath<'_> {
        Beneath {
            grants: &self.shell.grants.paths,
            job: &self.job,
        }
    }

    /// Claim the one stream slot for `what`; `Err` at once if it is taken.
    fn claim_stream(&self, what: &str) -> Result<StreamSlot, StorageError> {
        if self.run.streaming.swap(true, Ordering::SeqCst) {
            return Err(StorageError::Invalid(format!(
                "cannot {what} while a stream artifact is being written (or a tree added): \
                 finish it first"
            )));
        }
        Ok(StreamSlot(self.run.streaming.clone()))
    }

    /// Count one more open stream, within the run's `open-streams`.
    fn open_stream(&self) -> Result<OpenStream, StorageError> {
        let before = self.run.open.fetch_add(1, Ordering::SeqCst);
        let slot = OpenStream(self.run.open.clone());
        if before >= self.max_open {
            return Err(StorageError::Limit(format!(
                "{} streams are open: the job's open-streams limit; drop one first",
                self.max_open
            )));
        }
        Ok(slot)
    }

    /// A name for a new artifact: valid and not used yet.
    fn check_new_name(&self, name: &str) -> Result<(), StorageError> {
        validate_name(name)?;
        if self
            .run
            .written
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.name == name)
        {
            return Err(RepoError::ArtifactExists {
                name: name.to_owned(),
            }
            .into());
        }
        Ok(())
    }

    fn record(&self, info: &ArtifactInfo, verb: &str) {
        self.run.bytes.fetch_add(info.size, Ordering::Relaxed);
        if info.kind == RepoKind::Tree {
            self.run.advance(info.size);
        }
        if verb == "stored" {
            self.run.written.lock().unwrap().push(info.clone());
        }
        self.log.push(
            "info",
            &format!("{verb} artifact `{}`", info.name),
            &[
                ("kind".into(), format!("{:?}", info.kind).to_lowercase()),
                ("bytes".into(), info.size.to_string()),
            ],
        );
    }

    /// Start a granted command with `stdin` and piped stdout/stderr in its
    /// own tree, logging `what` (`{command}` stands for its command line).
    fn spawn_piped(
        &self,
        command: &Command,
        stdin: Stdio,
        what: &str,
    ) -> Result<(tokio::process::Child, Tree), StorageError> {
        let Prepared { mut cmd, mut tree } =
            shell::prepare(&self.job, &self.shell, &self.secrets, command)?;
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let line = format!("{} {}", command.program, command.args.join(" "));
        self.log
            .push("info", &what.replace("{command}", line.trim_end()), &[]);
        let child = cmd.spawn().map_err(|e| {
            StorageError::Failed(format!("cannot start `{}`: {e}", command.program))
        })?;
        tree.started(child.id());
        Ok((child, tree))
    }

    async fn create_from_command(
        &mut self,
        name: String,
        command: Command,
    ) -> Result<Artifact, StorageError> {
        let session = self.backup()?;
        self.check_new_name(&name)?;
        let slot = self.claim_stream(&format!("start artifact `{name}`"))?;
        let timeout = timeout_of(&command);
        let (mut child, tree) = self.spawn_piped(
            &command,
            Stdio::null(),
            &format!("streaming `{{command}}` into artifact `{name}`"),
        )?;
        let tree = Arc::new(Mutex::new(tree));
        let stdout: OwnedFd = child
            .stdout
            .take()
            .expect("piped")
            .into_owned_fd()
            .map_err(|e| StorageError::Failed(format!("stdout of `{}`: {e}", command.program)))?;
        let stderr = child.stderr.take().expect("piped");
        let (status_tx, status_rx) = std::sync::mpsc::channel();
        let program = command.program.clone();
        let cap = self.output_cap;
        let waiter_tree = tree.clone();
        let waiter = tokio::spawn(async move {
            let (err, status) = tokio::join!(read_capped(stderr, cap), async {
                let status = child.wait().await;
                waiter_tree.lock().unwrap().kill();
                status
            });
            let err = err.map(|(kept, _)| kept).unwrap_or_default();
            let outcome = match &status {
                Ok(st) => match exit_problem(&program, st, &err) {
                    None => Ok(()),
                    Some(p) => Err(p),
                },
                Err(e) => Err(format!("waiting for `{program}`: {e}")),
            };
            let _ = status_tx.send(outcome.clone());
            outcome
        });
        let reader = Counting {
            inner: CommandStdout {
                file: std::fs::File::from(stdout),
                program: command.program.clone(),
                status: status_rx,
                outcome: None,
            },
            run: self.run.clone(),
        };
        let archive_name = name.clone();
        let work = async {
            let result = blocking(move || {
                // The slot is held until the repository is done with the session.
                let _slot = slot;
                let mut s = session.lock().unwrap();
                s.add_stream(&archive_name, Box::new(reader))
                    .map_err(StorageError::from)
            })
            .await;
            let exit = waiter.await.unwrap_or_else(|e| Err(e.to_string()));
            (result, exit)
        };
        let (result, exit) = match tokio::time::timeout(timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                tree.lock().unwrap().kill();
                return Err(ShellError::TimedOut {
                    program: command.program.clone(),
                    timeout,
                }
                .into());
            }
        };
        tree.lock().unwrap().kill();
        match (result, exit) {
            (_, Err(problem)) => Err(StorageError::Failed(format!(
                "artifact `{name}` not stored: {problem}"
            ))),
            (Err(e), Ok(())) => Err(e),
            (Ok(info), Ok(())) => {
                self.record(&info, "stored");
                Ok(to_wit(&info))
            }
        }
    }

    async fn restore_to_command(
        &mut self,
        name: String,
        command: Command,
    ) -> Result<Output, StorageError> {
        let session = self.restore()?;
        let timeout = timeout_of(&command);
        // Check the grant before opening the artifact, and open it before
        // starting the command.
        drop(shell::prepare(
            &self.job,
            &self.shell,
            &self.secrets,
            &command,
        )?);
        let open_name = name.clone();
        let reader =
            blocking(move || session.open_stream(&open_name).map_err(StorageError::from)).await?;
        let (mut child, tree) = self.spawn_piped(
            &command,
            Stdio::piped(),
            &format!("feeding artifact `{name}` into `{{command}}`"),
        )?;
        let tree = Mutex::new(tree);
        let stdin: OwnedFd = child
            .stdin
            .take()
            .expect("piped")
            .into_owned_fd()
            .map_err(|e| StorageError::Failed(format!("stdin of `{}`: {e}", command.program)))?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let run = self.run.clone();
        let feed = tokio::task::spawn_blocking(move || {
            let mut reader = Counting { inner: reader, run };
            let mut file = std::fs::File::from(stdin);
            match std::io::copy(&mut reader, &mut file) {
                Ok(n) => Ok(n),
                // The command stopped reading (it failed or needed no more): its exit status tells.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
                Err(e) => Err(e.to_string()),
            }
        });
        let cap = self.output_cap;
        let work = async {
            tokio::join!(read_capped(stdout, cap), read_capped(stderr, cap), async {
                let status = child.wait().await;
                tree.lock().unwrap().kill();
                status
            })
        };
        let (out, err, status) = match tokio::time::timeout(timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                tree.lock().unwrap().kill();
                return Err(ShellError::TimedOut {
                    program: command.program.clone(),
                    timeout,
                }
                .into());
            }
        };
        let fed = feed
            .await
            .map_err(|e| StorageError::Failed(format!("feeding `{name}`: {e}")))?
            .map_err(|e| StorageError::Failed(format!("reading artifact `{name}`: {e}")))?;
        let status = status
            .map_err(|e| StorageError::Failed(format!("waiting for `{}`: {e}", command.program)))?;
        self.run.bytes.fetch_add(fed, Ordering::Relaxed);
        let (out, stdout_truncated) = out.unwrap_or_default();
        let (err, stderr_truncated) = err.unwrap_or_default();
        let redactor = self.log.redactor();
        Ok(Output {
            exit_code: status.code(),
            stdout: redactor.redact_cut(&out),
            stderr: redactor.redact_cut(&err),
            stdout_truncated,
            stderr_truncated,
        })
    }
}

fn forget_only() -> StorageError {
    StorageError::Unsupported(
        "a forget hook may only read the snapshot's notes and artifacts (list, open)".into(),
    )
}

/// A command's own timeout, or the default.
fn timeout_of(command: &Command) -> Duration {
    command
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Releases the stream slot when dropped.
struct StreamSlot(Arc<AtomicBool>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn to_wit(info: &ArtifactInfo) -> Artifact {
    Artifact {
        name: info.name.clone(),
        kind: match info.kind {
            RepoKind::Stream => ArtifactKind::Stream,
            RepoKind::Tree => ArtifactKind::Tree,
        },
        size: info.size,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Failed(format!("storage worker failed: {e}")))?
}

/// Counts bytes as they are read, for live progress.
struct Counting<R> {
    inner: R,
    run: RunStorage,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.run.advance(n as u64);
        Ok(n)
    }
}

/// A blocking reader over chunks a module sends through a channel; an `Err`
/// chunk (the writer was dropped unfinished) fails the artifact.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Err(why)) => return Err(std::io::Error::other(why)),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A child's stdout that, at end of file, waits for the child and turns a
/// failed exit into a read error, so a failed dump never becomes an artifact.
struct CommandStdout {
    file: std::fs::File,
    program: String,
    status: std::sync::mpsc::Receiver<Result<(), String>>,
    /// The command's outcome, once seen (readers may read again after EOF).
    outcome: Option<Result<(), String>>,
}

impl Read for CommandStdout {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let program = &self.program;
            let status = &self.status;
            let outcome = self.outcome.get_or_insert_with(|| {
                status
                    .recv()
                    .unwrap_or_else(|_| Err(format!("`{program}` was stopped before it finished")))
            });
            if let Err(why) = outcome {
                return Err(std::io::Error::other(why.clone()));
            }
        }
        Ok(n)
    }
}

/// Why a command failed, from its exit status and the tail of its stderr.
fn exit_problem(program: &str, status: &std::process::ExitStatus, stderr: &[u8]) -> Option<String> {
    if status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(stderr);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let how = match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => "was killed by a signal".to_string(),
    };
    Some(if last.is_empty() {
        format!("`{program}` {how}")
    } else {
        format!("`{program}` {how}: {last}")
    })
}

impl HostWriter for StorageCap {
    async fn write(&mut self, w: Resource<Writer>, bytes: Vec<u8>) -> HostResult<()> {
        let writer = self.table.get_mut(&w)?;
        let name = writer.name.clone();
        let Some(tx) = writer.tx.clone() else {
            return Err(
                StorageError::Invalid(format!("artifact `{name}` is already finished")).into(),
            );
        };
        if tx.send(Ok(bytes)).await.is_ok() {
            return Ok(());
        }
        // The repository side stopped: report why.
        let writer = self.table.get_mut(&w)?;
        writer.tx = None;
        let err = match writer.done.take() {
            Some(done) => match done.await {
                Ok(Err(e)) => StorageError::from(e),
                Ok(Ok(_)) => StorageError::Failed(format!("artifact `{name}` ended early")),
                Err(e) => StorageError::Failed(format!("artifact `{name}`: {e}")),
            },
            None => StorageError::Failed(format!("artifact `{name}` failed")),
        };
        Err(err.into())
    }

    async fn finish(&mut self, w: Resource<Writer>) -> HostResult<Artifact> {
        let writer = self.table.get_mut(&w)?;
        let name = writer.name.clone();
        writer.tx = None;
        let Some(done) = writer.done.take() else {
            return Err(
                StorageError::Invalid(format!("artifact `{name}` is already finished")).into(),
            );
        };
        match done.await {
            Ok(Ok(info)) => {
                self.record(&info, "stored");
                Ok(to_wit(&info))
            }
            Ok(Err(e)) => Err(StorageError::from(e).into()),
            Err(e) => Err(StorageError::Failed(format!("artifact `{name}`: {e}")).into()),
        }
    }

    async fn drop(&mut self, w: Resource<Writer>) -> wasmtime::Result<()> {
        let writer = self.table.delete(w)?;
        if let Some(tx) = writer.tx {
            // Unfinished: make the repository side fail this artifact.
            let _ = tx
                .send(Err(format!(
                    "artifact `{}` was dropped before it was finished",
                    writer.name
                )))
                .await;
        }
        if let Some(done) = writer.done {
            let _ = done.await;
        }
        Ok(())
    }
}

impl HostReader for StorageCap {
    async fn read(&mut self, r: Resource<Reader>, max: u64) -> HostResult<Vec<u8>> {
        let inner = self.table.get(&r)?.inner.clone();
        let max = usize::try_from(max.clamp(1, MAX_READ)).unwrap_or(1);
        let bytes = blocking(move || {
            let mut reader = inner.lock().unwrap();
            let mut buf = vec![0u8; max];
            let mut filled = 0;
            while filled < max {
                match reader.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(StorageError::Failed(format!("reading artifact: {e}"))),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        })
        .await?;
        self.run
            .bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    async fn drop(&mut self, r: Resource<Reader>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl Host for StorageCap {
    async fn create(&mut self, name: String) -> HostResult<Resource<Writer>> {
        let session = self.backup()?;
        self.check_new_name(&name)?;
        let open = self.open_stream()?;
        let slot = self.claim_stream(&format!("start artifact `{name}`"))?;
        let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_DEPTH);
        let reader = Counting {
            inner: ChannelReader {
                rx,
                chunk: Vec::new(),
                pos: 0,
            },
            run: self.run.clone(),
        };
        let archive_name = name.clone();
        let done = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let mut s = session.lock().unwrap();
            s.add_stream(&archive_name, Box::new(reader))
        });
        let writer = Writer {
            name,
            tx: Some(tx),
            done: Some(done),
            _open: open,
        };
        Ok(self.table.push(writer)?)
    }

    async fn create_from_command(
        &mut self,
        name: String,
        command: Command,
    ) -> HostResult<Artifact> {
        Ok(StorageCap::create_from_command(self, name, command).await?)
    }

    async fn add_tree(&mut self, name: String, path: String) -> HostResult<Artifact> {
        let session = self.backup()?;
        self.check_new_name(&name)?;
        let path = self
            .beneath()
            .open(&path, Access::Read)
            .map_err(StorageError::from)?
            .path;
        let slot = self.claim_stream(&format!("add tree artifact `{name}`"))?;
        self.log.push(
            "info",
            &format!("adding {} as tree artifact `{name}`", path.display()),
            &[],
        );
        let info = blocking(move || {
            let _slot = slot;
            let mut s = session.lock().unwrap();
            s.add_tree(&name, &path).map_err(StorageError::from)
        })
        .await?;
        self.record(&info, "stored");
        Ok(to_wit(&info))
    }

    async fn set_note(&mut self, key: String, value: String) -> HostResult<()> {
        self.backup()?;
        if key.is_empty() || key.len() > MAX_NOTE_KEY || key.chars().any(char::is_control) {
            return Err(StorageError::Invalid(format!(
                "a note key is 1 to {MAX_NOTE_KEY} bytes without control characters, not {} bytes",
                key.len()
            ))
            .into());
        }
        let value = self.log.redactor().redact(&value);
        let mut notes = self.run.notes.lock().unwrap();
        let size_without: usize = notes
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        let total = (size_without + key.len() + value.len()) as u64;
        if total > self.result_cap {
            return Err(StorageError::Limit(format!(
                "the snapshot's notes would take {} bytes: the job's result-limit is {}",
                total,
                format_size(self.result_cap)
            ))
            .into());
        }
        notes.insert(key, value);
        Ok(())
    }

    async fn notes(&mut self) -> HostResult<Vec<(String, String)>> {
        let notes: BTreeMap<String, String> = match &self.run.mode {
            StorageMode::Backup(_) => self.run.notes.lock().unwrap().clone(),
            StorageMode::Restore(s) | StorageMode::Forget(s) => {
                let s = s.clone();
                blocking(move || s.notes().map_err(StorageError::from)).await?
            }
            StorageMode::Unavailable(why) => {
                return Err(StorageError::Unsupported(why.clone()).into());
            }
        };
        let redactor = self.log.redactor();
        Ok(notes
            .into_iter()
            .map(|(k, v)| (redactor.redact(&k), redactor.redact(&v)))
            .collect())
    }

    async fn list(&mut self) -> HostResult<Vec<Artifact>> {
        let list: Vec<ArtifactInfo> = match &self.run.mode {
            StorageMode::Backup(_) => self.run.written.lock().unwrap().clone(),
            StorageMode::Restore(s) | StorageMode::Forget(s) => {
                let s = s.clone();
                blocking(move || s.artifacts().map_err(StorageError::from)).await?
            }
            StorageMode::Unavailable(why) => {
                return Err(StorageError::Unsupported(why.clone()).into());
            }
        };
        Ok(list.iter().map(to_wit).collect())
    }

    async fn open(&mut self, name: String) -> HostResult<Resource<Reader>> {
        let session = self.readable()?;
        let open = self.open_stream()?;
        let reader =
            blocking(move || session.open_stream(&name).map_err(StorageError::from)).await?;
        Ok(self.table.push(Reader {
            inner: Arc::new(Mutex::new(reader)),
            _open: open,
        })?)
    }

    async fn restore_to_command(&mut self, name: String, command: Command) -> HostResult<Output> {
        Ok(StorageCap::restore_to_command(self, name, command).await?)
    }

    async fn restore_tree(
        &mut self,
        name: String,
        target: String,
        overwrite: bool,
    ) -> HostResult<Artifact> {
        let session = self.restore()?;
        let target = self
            .beneath()
            .directory(&target, Access::ReadWrite, true)
            .map_err(StorageError::from)?;
        if !overwrite {
            fs::ensure_empty(&target).map_err(StorageError::from)?;
        }
        self.log.push(
            "info",
            &format!(
                "restoring tree artifact `{name}` to {}",
                target.path.display()
            ),
            &[],
        );
        let restored = blocking(move || {
            // The repository writes into a fresh directory of the host's;
            // its entries then replace (never write through) the target's.
            let staging = Staging::create(&target)?;
            let restored = session.restore_tree(&name, &staging.path)?;
            fs::merge(&staging.fd, &target.fd, &target.path)?;
            if restored.is_dir {
                fs::copy_dir_meta(&staging.fd, &target.fd, &target.path)?;
            }
            drop(staging);
            Ok(restored)
        })
        .await?;
        for damaged in &restored.damaged {
            self.log.push("warn", &format!("left out: {damaged}"), &[]);
        }
        for skipped in &restored.skipped {
            self.log.push(
                "warn",
                &format!("left out `{skipped}`: device nodes, FIFOs and sockets are not restored"),
                &[],
            );
        }
        let info = restored.info;
        self.record(&info, "restored");
        Ok(to_wit(&info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_progress_is_reported_once_per_mebibyte_as_bytes_flow() {
        let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
        let sink_seen = seen.clone();
        let sink: ProgressSink = Arc::new(move |job: &str, p: Progress| {
            assert_eq!(job, "db");
            assert!(p.bytes);
            sink_seen.lock().unwrap().push(p.done);
        });
        let run = RunStorage::unavailable("test").with_progress("db", sink);
        let data = vec![7u8; 3 * (1 << 20) + 10];
        let mut reader = Counting {
            inner: &data[..],
            run: run.clone(),
        };
        let mut out = Vec::new();
        std::io::copy(&mut reader, &mut out).unwrap();
        assert_eq!(out.len(), data.len());
        let seen = seen.lock().unwrap().clone();
        // One report per MiB crossed, the last at end of stream with the total.
        assert_eq!(seen, vec![1 << 20, 2 << 20, data.len() as u64], "{seen:?}");
    }
}
