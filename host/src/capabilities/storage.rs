//! `cairn:plugin/storage`: artifacts of the current run's snapshot.
//!
//! A backup run writes into one [`BackupSession`] (committed by the runner
//! only if the task succeeds); a restore run reads one snapshot through a
//! [`RestoreSession`]. Bulk bytes stay host-side: a command's stdout is piped
//! straight into the repository, an artifact straight into a command's stdin,
//! and directory trees are read and written by the host. Bytes a module writes
//! itself go through a small bounded channel, so memory stays bounded whatever
//! the size. Repository calls are blocking and run on the blocking pool.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use super::bindings::interfaces::shell::{Command, Output};
use super::bindings::interfaces::storage::{
    self, Artifact, ArtifactKind, Host, HostReader, HostWriter,
};
use super::log::RunLog;
use super::progress::{Progress, ProgressSink};
use super::secrets::SecretValues;
use super::shell::{self, GroupGuard, ShellError, ShellGrant};
use super::{Capability, HostError, HostResult, HostShared, RunContext, WitError, grants_phrase};
use crate::model::Access;
use crate::repository::{
    ArtifactInfo, ArtifactKind as RepoKind, BackupSession, RepoError, RestoreSession,
};
use crate::sys::normalize;

/// Bytes handed to the repository per chunk when a module writes a stream.
const CHANNEL_DEPTH: usize = 16;
/// Largest single `reader.read` answered.
const MAX_READ: u64 = 4 << 20;

/// Why a `storage` call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Not possible in this run (a write during a restore, no repository).
    #[error("{0}")]
    Unsupported(String),
    /// The path is not under a grant with the access needed.
    #[error(
        "{} access to {} is not granted to job `{job}`: `allow.paths` {granted}",
        .need.as_str(),
        .path.display()
    )]
    PathNotGranted {
        /// The access needed.
        need: Access,
        /// The path asked for (normalized).
        path: PathBuf,
        /// The job.
        job: String,
        /// What the job grants, as a phrase.
        granted: String,
    },
    /// The request is malformed (a relative path, a second open stream).
    #[error("{0}")]
    Invalid(String),
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
            StorageError::PathNotGranted { .. } => Self::Denied(e.to_string()),
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
}

/// Run-wide storage state shared by the task's store and its Function stores.
#[derive(Clone)]
pub struct RunStorage {
    mode: StorageMode,
    /// A stream artifact is being written (only one at a time).
    streaming: Arc<AtomicBool>,
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

    /// The backup session, for commit, once no store holds it any more;
    /// `Ok(None)` when this is not a backup.
    ///
    /// # Errors
    /// When a store still shares the session (a bug: commit must not race a writer).
    pub fn take_backup(self) -> anyhow::Result<Option<BackupSession>> {
        match self.mode {
            StorageMode::Backup(s) => Arc::try_unwrap(s)
                .map(|m| Some(m.into_inner().unwrap_or_else(|e| e.into_inner())))
                .map_err(|_| {
                    anyhow::anyhow!("the snapshot is still in use by a module; not committing it")
                }),
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
}

/// A stream artifact being read by the module (host side of `storage.reader`).
pub struct Reader {
    inner: Arc<Mutex<Box<dyn Read + Send>>>,
}

/// The `storage` capability of one store.
pub struct StorageCap {
    job: String,
    run: RunStorage,
    table: ResourceTable,
    shell: ShellGrant,
    output_cap: u64,
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
            shell: ShellGrant::of(&run.grants),
            output_cap: run.limits.output,
            secrets: run.secrets.clone(),
            log: run.log.clone(),
        })
    }
}

impl StorageCap {
    fn backup(&self) -> Result<Arc<Mutex<BackupSession>>, StorageError> {
        match &self.run.mode {
            StorageMode::Backup(s) => Ok(s.clone()),
            StorageMode::Restore(_) => Err(StorageError::Unsupported(
                "this is a restore run: artifacts can only be read".into(),
            )),
            StorageMode::Unavailable(why) => Err(StorageError::Unsupported(why.clone())),
        }
    }

    fn restore(&self) -> Result<Arc<RestoreSession>, StorageError> {
        match &self.run.mode {
            StorageMode::Restore(s) => Ok(s.clone()),
            StorageMode::Backup(_) => Err(StorageError::Unsupported(
                "this is a backup run: there is no snapshot to read yet".into(),
            )),
            StorageMode::Unavailable(why) => Err(StorageError::Unsupported(why.clone())),
        }
    }

    /// `path` must lie under a granted path with at least `need` access.
    fn check_path(&self, path: &str, need: Access) -> Result<PathBuf, StorageError> {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(StorageError::Invalid(format!(
                "path `{path}` must be absolute"
            )));
        }
        let normal = normalize(p);
        let ok = self
            .shell
            .paths
            .iter()
            .any(|(granted, access)| normal.starts_with(granted) && access.covers(need));
        if ok {
            return Ok(normal);
        }
        let granted = self
            .shell
            .paths
            .iter()
            .map(|(p, a)| format!("{} ({})", p.display(), a.as_str()));
        Err(StorageError::PathNotGranted {
            need,
            path: normal,
            job: self.job.clone(),
            granted: grants_phrase(granted),
        })
    }

    /// Claim the one stream slot; `Err` if a stream artifact is still open.
    fn claim_stream(&self, name: &str) -> Result<StreamSlot, StorageError> {
        if self.run.streaming.swap(true, Ordering::SeqCst) {
            return Err(StorageError::Invalid(format!(
                "cannot start artifact `{name}` while another stream artifact is being written: finish it first"
            )));
        }
        Ok(StreamSlot(self.run.streaming.clone()))
    }

    fn record(&self, info: &ArtifactInfo, verb: &str) {
        self.run.bytes.fetch_add(info.size, Ordering::Relaxed);
        if info.kind == RepoKind::Tree {
            self.run.advance(info.size);
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

async fn read_capped(mut pipe: impl tokio::io::AsyncRead + Unpin, cap: u64) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = (cap as usize).saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

impl StorageCap {
    /// Start a granted command with `stdin` and piped stdout/stderr in its own
    /// process group, logging `what` (`{command}` stands for its command line).
    fn spawn_piped(
        &self,
        command: &Command,
        stdin: Stdio,
        what: &str,
    ) -> Result<(tokio::process::Child, GroupGuard), StorageError> {
        let mut cmd = shell::prepare(&self.job, &self.shell, &self.secrets, command)?;
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let line = format!("{} {}", command.program, command.args.join(" "));
        self.log
            .push("info", &what.replace("{command}", line.trim_end()), &[]);
        let child = cmd.spawn().map_err(|e| {
            StorageError::Failed(format!("cannot start `{}`: {e}", command.program))
        })?;
        let guard = GroupGuard::new(child.id());
        Ok((child, guard))
    }

    async fn create_from_command(
        &mut self,
        name: String,
        command: Command,
    ) -> Result<Artifact, StorageError> {
        let session = self.backup()?;
        let slot = self.claim_stream(&name)?;
        let (mut child, guard) = self.spawn_piped(
            &command,
            Stdio::null(),
            &format!("streaming `{{command}}` into artifact `{name}`"),
        )?;
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
        let waiter = tokio::spawn(async move {
            let (err, status) = tokio::join!(read_capped(stderr, cap), child.wait());
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
        let result = blocking(move || {
            let mut s = session.lock().unwrap();
            s.add_stream(&archive_name, Box::new(reader))
                .map_err(StorageError::from)
        })
        .await;
        let exit = waiter.await.unwrap_or_else(|e| Err(e.to_string()));
        guard.finish();
        drop(slot);
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
        // Check the grant before opening the artifact, and open it before starting the command.
        shell::prepare(&self.job, &self.shell, &self.secrets, &command)?;
        let open_name = name.clone();
        let reader =
            blocking(move || session.open_stream(&open_name).map_err(StorageError::from)).await?;
        let (mut child, guard) = self.spawn_piped(
            &command,
            Stdio::piped(),
            &format!("feeding artifact `{name}` into `{{command}}`"),
        )?;
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
        let (out, err, status) = tokio::join!(
            read_capped(stdout, cap),
            read_capped(stderr, cap),
            child.wait()
        );
        guard.finish();
        let fed = feed
            .await
            .map_err(|e| StorageError::Failed(format!("feeding `{name}`: {e}")))?
            .map_err(|e| StorageError::Failed(format!("reading artifact `{name}`: {e}")))?;
        let status = status
            .map_err(|e| StorageError::Failed(format!("waiting for `{}`: {e}", command.program)))?;
        self.run.bytes.fetch_add(fed, Ordering::Relaxed);
        Ok(Output {
            exit_code: status.code(),
            stdout_truncated: out.len() as u64 >= cap,
            stderr_truncated: err.len() as u64 >= cap,
            stdout: out,
            stderr: err,
        })
    }
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
        let slot = self.claim_stream(&name)?;
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
        let path = self.check_path(&path, Access::Read)?;
        if !path.exists() {
            return Err(
                StorageError::NotFound(format!("{} does not exist", path.display())).into(),
            );
        }
        self.log.push(
            "info",
            &format!("adding {} as tree artifact `{name}`", path.display()),
            &[],
        );
        let info = blocking(move || {
            let mut s = session.lock().unwrap();
            s.add_tree(&name, &path).map_err(StorageError::from)
        })
        .await?;
        self.record(&info, "stored");
        Ok(to_wit(&info))
    }

    async fn set_note(&mut self, key: String, value: String) -> HostResult<()> {
        let session = self.backup()?;
        session.lock().unwrap().set_note(&key, &value);
        Ok(())
    }

    async fn notes(&mut self) -> HostResult<Vec<(String, String)>> {
        let notes: BTreeMap<String, String> = match &self.run.mode {
            StorageMode::Backup(s) => s.lock().unwrap().notes(),
            StorageMode::Restore(s) => {
                let s = s.clone();
                blocking(move || s.notes().map_err(StorageError::from)).await?
            }
            StorageMode::Unavailable(why) => {
                return Err(StorageError::Unsupported(why.clone()).into());
            }
        };
        Ok(notes.into_iter().collect())
    }

    async fn list(&mut self) -> HostResult<Vec<Artifact>> {
        let list: Vec<ArtifactInfo> = match &self.run.mode {
            StorageMode::Backup(s) => s.lock().unwrap().artifacts(),
            StorageMode::Restore(s) => {
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
        let session = self.restore()?;
        let reader =
            blocking(move || session.open_stream(&name).map_err(StorageError::from)).await?;
        Ok(self.table.push(Reader {
            inner: Arc::new(Mutex::new(reader)),
        })?)
    }

    async fn restore_to_command(&mut self, name: String, command: Command) -> HostResult<Output> {
        Ok(StorageCap::restore_to_command(self, name, command).await?)
    }

    async fn restore_tree(&mut self, name: String, target: String) -> HostResult<Artifact> {
        let session = self.restore()?;
        let target = self.check_path(&target, Access::ReadWrite)?;
        self.log.push(
            "info",
            &format!("restoring tree artifact `{name}` to {}", target.display()),
            &[],
        );
        let info = blocking(move || {
            session
                .restore_tree(&name, &target)
                .map_err(StorageError::from)
        })
        .await?;
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
