//! `cairn:plugin/shell`: granted programs as child processes, argv only.
//!
//! Programs are granted by name and were resolved to an absolute path when
//! the config loaded. The environment starts empty (values may contain
//! `{{secret:NAME}}`), each child gets its own process group, and on timeout
//! (or when the run is dropped) the whole group is killed. Captured output is
//! capped; the rest is read and discarded so the child never blocks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use wasmtime::component::{HasSelf, Linker};

use super::bindings::interfaces::shell::{self, Command, Host, Output};
use super::log::RunLog;
use super::secrets::SecretValues;
use super::{Capability, HostError, HostResult, HostShared, RunContext, WitError, grants_phrase};
use crate::model::{Access, GrantedProgram, Grants};
use crate::units::format_duration;

/// Default timeout of one command when the guest sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a job may run, and where.
#[derive(Clone)]
pub struct ShellGrant {
    /// Programs by granted name.
    pub programs: BTreeMap<String, GrantedProgram>,
    /// Paths a working directory may lie under.
    pub paths: BTreeMap<PathBuf, Access>,
}

impl ShellGrant {
    /// The programs and paths of `grants`.
    #[must_use]
    pub fn of(grants: &Grants) -> Self {
        Self {
            programs: grants.programs.clone(),
            paths: grants.paths.clone(),
        }
    }
}

/// Why a command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// The program is not in the job's `allow.commands`.
    #[error("program `{program}` is not granted to job `{job}`: `allow.commands` {granted}")]
    NotGranted {
        /// The program asked for.
        program: String,
        /// The job.
        job: String,
        /// What the job grants, as a phrase.
        granted: String,
    },
    /// The program is granted but was not found when the config loaded.
    #[error(
        "program `{program}` is granted to job `{job}` but is not installed (not found in PATH when the config was loaded)"
    )]
    NotInstalled {
        /// The program.
        program: String,
        /// The job.
        job: String,
    },
    /// The working directory is not under a granted path.
    #[error(
        "working directory `{}` is not under a path granted to job `{job}` (`allow.paths`)",
        .cwd.display()
    )]
    CwdNotGranted {
        /// The directory asked for.
        cwd: PathBuf,
        /// The job.
        job: String,
    },
    /// The command is malformed (an environment variable name).
    #[error("{0}")]
    Invalid(String),
    /// A secret placeholder in the environment could not be filled in.
    #[error("{}", super::describe(.0))]
    Secret(WitError),
    /// The command did not finish within its timeout.
    #[error("`{program}` did not finish within {}; its process group was killed", format_duration(*.timeout))]
    TimedOut {
        /// The program.
        program: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Starting, feeding or waiting for the command failed.
    #[error("{0}")]
    Failed(String),
}

impl From<ShellError> for WitError {
    fn from(e: ShellError) -> Self {
        match e {
            ShellError::Secret(e) => e,
            ShellError::NotGranted { .. } | ShellError::CwdNotGranted { .. } => {
                Self::Denied(e.to_string())
            }
            ShellError::NotInstalled { .. } => Self::NotFound(e.to_string()),
            ShellError::Invalid(_) => Self::Invalid(e.to_string()),
            ShellError::TimedOut { .. } => Self::Limit(e.to_string()),
            ShellError::Failed(_) => Self::Failed(e.to_string()),
        }
    }
}

impl From<ShellError> for HostError {
    fn from(e: ShellError) -> Self {
        WitError::from(e).into()
    }
}

/// Kills a child's whole process group when dropped (timeout, cancelled run).
pub struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    /// Guard the group led by process `pid`.
    pub fn new(pid: Option<u32>) -> Self {
        Self {
            pgid: pid.map(|p| p as i32),
        }
    }

    /// The child finished normally; kill stragglers of its group anyway.
    pub fn finish(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // SAFETY: kill(2) with a negative pid signals a process group we created.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `shell` capability of one store.
pub struct ShellCap {
    job: String,
    grant: ShellGrant,
    output_cap: u64,
    secrets: Arc<SecretValues>,
    log: RunLog,
}

impl Capability for ShellCap {
    const INTERFACE: &'static str = "cairn:plugin/shell";

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()> {
        shell::add_to_linker::<T, HasSelf<Self>>(linker, get)
    }

    /// Commands of the run's job under its grants, output capped at its
    /// `output-limit` per stream.
    fn prepare(run: &RunContext, _host: &HostShared) -> anyhow::Result<Self> {
        Ok(Self {
            job: run.job.clone(),
            grant: ShellGrant::of(&run.grants),
            output_cap: run.limits.output,
            secrets: run.secrets.clone(),
            log: run.log.clone(),
        })
    }
}

impl ShellCap {
    async fn run(&self, command: Command, stdin: Option<Vec<u8>>) -> Result<Output, ShellError> {
        let mut cmd = prepare(&self.job, &self.grant, &self.secrets, &command)?;
        let timeout = command
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIMEOUT);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        self.log.push(
            "debug",
            &format!("run {} {}", command.program, command.args.join(" ")),
            &[],
        );
        let mut child = cmd
            .spawn()
            .map_err(|e| ShellError::Failed(format!("cannot start `{}`: {e}", command.program)))?;
        let guard = GroupGuard::new(child.id());
        let cap = self.output_cap;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let stdin_pipe = child.stdin.take();
        let feed = async {
            if let (Some(mut pipe), Some(bytes)) = (stdin_pipe, stdin) {
                // A child that exits without reading its input is not an error here.
                let _ = pipe.write_all(&bytes).await;
            }
        };
        let work = async {
            let ((), out, err, status) = tokio::join!(
                feed,
                read_capped(stdout, cap),
                read_capped(stderr, cap),
                child.wait()
            );
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                drop(guard);
                return Err(ShellError::TimedOut {
                    program: command.program.clone(),
                    timeout,
                });
            }
        };
        guard.finish();
        let status = status
            .map_err(|e| ShellError::Failed(format!("waiting for `{}`: {e}", command.program)))?;
        let (stdout, stdout_truncated) = out.map_err(|e| {
            ShellError::Failed(format!("reading stdout of `{}`: {e}", command.program))
        })?;
        let (stderr, stderr_truncated) = err.map_err(|e| {
            ShellError::Failed(format!("reading stderr of `{}`: {e}", command.program))
        })?;
        Ok(Output {
            exit_code: status.code(),
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
        })
    }
}

/// Build the child process for `command` of `job` under `grant` (used by
/// `storage` too).
///
/// # Errors
/// A program, secret or working directory not granted, a granted program
/// that is not installed, a malformed environment.
pub(crate) fn prepare(
    job: &str,
    grant: &ShellGrant,
    secrets: &SecretValues,
    command: &Command,
) -> Result<tokio::process::Command, ShellError> {
    let program = grant
        .programs
        .get(&command.program)
        .ok_or_else(|| ShellError::NotGranted {
            program: command.program.clone(),
            job: job.to_owned(),
            granted: grants_phrase(grant.programs.keys()),
        })?;
    let path = program
        .path
        .as_ref()
        .ok_or_else(|| ShellError::NotInstalled {
            program: command.program.clone(),
            job: job.to_owned(),
        })?;
    let mut cmd = tokio::process::Command::new(path);
    cmd.args(&command.args)
        .env_clear()
        .process_group(0)
        .kill_on_drop(true);
    for (k, v) in &command.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(ShellError::Invalid(format!(
                "invalid environment variable name `{k}`"
            )));
        }
        cmd.env(k, secrets.substitute(job, v).map_err(ShellError::Secret)?);
    }
    if let Some(cwd) = &command.cwd {
        let cwd = Path::new(cwd);
        if !cwd.is_absolute() || !grant.paths.keys().any(|p| cwd.starts_with(p)) {
            return Err(ShellError::CwdNotGranted {
                cwd: cwd.to_path_buf(),
                job: job.to_owned(),
            });
        }
        cmd.current_dir(cwd);
    } else {
        cmd.current_dir("/");
    }
    Ok(cmd)
}

/// Read all of `pipe`, keeping at most `cap` bytes. Returns (kept, truncated).
async fn read_capped(
    mut pipe: impl AsyncRead + Unpin,
    cap: u64,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, truncated));
        }
        let room = (cap as usize).saturating_sub(kept.len());
        if n > room {
            truncated = true;
        }
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

impl Host for ShellCap {
    async fn run(&mut self, command: Command, stdin: Option<Vec<u8>>) -> HostResult<Output> {
        let program = command.program.clone();
        let result = ShellCap::run(self, command, stdin).await;
        match &result {
            Ok(out) => self.log.push(
                "debug",
                &format!("`{program}` exited with {:?}", out.exit_code),
                &[],
            ),
            Err(e) => self.log.push("debug", &format!("`{program}`: {e}"), &[]),
        }
        Ok(result?)
    }
}
