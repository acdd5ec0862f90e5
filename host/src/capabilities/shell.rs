//! `cairn:plugin/shell`: granted programs as child processes, argv only.
//!
//! Programs are granted by name and were resolved to an absolute path when
//! the config loaded. A program's environment is `PATH` and `LANG` (set by
//! the host) plus the variables its grant declares and its secrets' bindings
//! name; anything else a module asks for is denied, and a name that changes
//! how a program or its loader behaves is refused outright. Values may hold
//! `{{secret:NAME}}` where the secret is bound to that variable of that
//! program. Arguments are checked against the program's `deny-args` and
//! `allow-args`. The working directory is opened beneath its grant without
//! following symlinks. Each command's whole process tree is killed when it
//! ends, times out or is cancelled ([`super::process`]). Captured output is
//! capped (the rest is read and discarded so the child never blocks) and
//! cleaned of secrets before the module sees it.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use wasmtime::component::{HasSelf, Linker};

use super::bindings::interfaces::shell::{self, Command, Host, Output};
use super::fs::{Beneath, FsError};
use super::log::RunLog;
use super::process::Tree;
use super::redact::Redactor;
use super::secrets::{Destination, SecretValues};
use super::{Capability, HostError, HostResult, HostShared, RunContext, WitError, grants_phrase};
use crate::model::{Access, Grants, unsafe_env};
use crate::units::format_duration;

/// Default timeout of one command when the guest sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The environment every program gets from the host.
pub const BASE_ENV: [(&str, &str); 2] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("LANG", "C.UTF-8"),
];

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
    /// An argument is refused by the program's argument rules.
    #[error("argument `{arg}` of `{program}` is refused: {why} (`allow.commands.{program}`)")]
    ArgRefused {
        /// The program.
        program: String,
        /// The argument.
        arg: String,
        /// Which rule refuses it.
        why: String,
    },
    /// An environment variable the program may not be given.
    #[error("environment variable `{var}` of `{program}` is refused: {why}")]
    EnvRefused {
        /// The program.
        program: String,
        /// The variable.
        var: String,
        /// Why.
        why: String,
    },
    /// The working directory is not usable (not granted, a symlink …).
    #[error("working directory: {0}")]
    Cwd(FsError),
    /// The command is malformed (an environment variable name).
    #[error("{0}")]
    Invalid(String),
    /// A secret placeholder in the environment could not be filled in.
    #[error("{}", super::describe(.0))]
    Secret(WitError),
    /// The command did not finish within its timeout.
    #[error("`{program}` did not finish within {}; it was killed with every process it started", format_duration(*.timeout))]
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
            ShellError::Cwd(e) => match WitError::from(e) {
                WitError::Denied(m) => WitError::Denied(format!("working directory: {m}")),
                WitError::NotFound(m) => WitError::NotFound(format!("working directory: {m}")),
                WitError::Invalid(m) => WitError::Invalid(format!("working directory: {m}")),
                other => other,
            },
            ShellError::NotGranted { .. }
            | ShellError::ArgRefused { .. }
            | ShellError::EnvRefused { .. } => Self::Denied(e.to_string()),
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

/// What a job may run, and where: its grants, for `shell` and `storage`.
#[derive(Clone)]
pub struct ShellGrant {
    /// The job's grants.
    pub grants: Arc<Grants>,
}

/// A command prepared to start: the process (not spawned yet) and the tree
/// that will hold it.
pub struct Prepared {
    /// The process to spawn.
    pub cmd: tokio::process::Command,
    /// Kills what it starts.
    pub tree: Tree,
}

/// Build the child process for `command` of `job` under `grant` (used by
/// `storage` too): the program, its checked arguments and environment, its
/// working directory, contained in a [`Tree`].
///
/// # Errors
/// A program, argument, variable, secret or working directory not granted,
/// a granted program that is not installed, a malformed environment.
pub(crate) fn prepare(
    job: &str,
    grant: &ShellGrant,
    secrets: &SecretValues,
    command: &Command,
) -> Result<Prepared, ShellError> {
    let grants = &grant.grants;
    let name = &command.program;
    let program = grants
        .programs
        .get(name)
        .ok_or_else(|| ShellError::NotGranted {
            program: name.clone(),
            job: job.to_owned(),
            granted: grants_phrase(grants.programs.keys()),
        })?;
    let path = program
        .path
        .as_ref()
        .ok_or_else(|| ShellError::NotInstalled {
            program: name.clone(),
            job: job.to_owned(),
        })?;
    if let Some((arg, pattern)) = program.args.refused(&command.args) {
        return Err(ShellError::ArgRefused {
            program: name.clone(),
            arg: arg.to_owned(),
            why: match pattern {
                Some(p) => format!("it matches `deny-args` pattern `{p}`"),
                None => "it matches no `allow-args` pattern".to_owned(),
            },
        });
    }
    let mut cmd = tokio::process::Command::new(path);
    cmd.args(&command.args).env_clear().envs(BASE_ENV);
    let allowed = grants.env_of(name);
    for (var, value) in &command.env {
        let valid = var
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ShellError::Invalid(format!(
                "invalid environment variable name `{var}`"
            )));
        }
        let refuse = |why: String| ShellError::EnvRefused {
            program: name.clone(),
            var: var.clone(),
            why,
        };
        if let Some(why) = unsafe_env(var) {
            return Err(refuse(format!("it is never passed to a program: {why}")));
        }
        if !allowed.contains(var.as_str()) {
            let declared = if allowed.is_empty() {
                "declares none".to_owned()
            } else {
                format!(
                    "declares only {}",
                    allowed.iter().copied().collect::<Vec<_>>().join(", ")
                )
            };
            return Err(refuse(format!(
                "job `{job}` {declared} for it; declare it in `allow.commands.{name}.env` (or \
                 bind a secret to it)"
            )));
        }
        let to = Destination::Env { program: name, var };
        let (value, _) = secrets
            .substitute(job, value, to)
            .map_err(ShellError::Secret)?;
        cmd.env(var, value);
    }
    let cwd = match &command.cwd {
        Some(cwd) => Some(
            Beneath {
                grants: &grants.paths,
                job,
            }
            .directory(cwd, Access::Read, false)
            .map_err(ShellError::Cwd)?
            .fd,
        ),
        None => {
            cmd.current_dir("/");
            None
        }
    };
    let tree = Tree::contain(&mut cmd, cwd)
        .map_err(|e| ShellError::Failed(format!("cannot contain `{name}`: {e}")))?;
    Ok(Prepared { cmd, tree })
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
            grant: ShellGrant {
                grants: run.grants.clone(),
            },
            output_cap: run.limits.output,
            secrets: run.secrets.clone(),
            log: run.log.clone(),
        })
    }

    fn redactor(&self) -> Option<&Redactor> {
        Some(self.log.redactor())
    }
}

impl ShellCap {
    async fn run(&self, command: Command, stdin: Option<Vec<u8>>) -> Result<Output, ShellError> {
        let Prepared { mut cmd, mut tree } =
            prepare(&self.job, &self.grant, &self.secrets, &command)?;
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
        tree.started(child.id());
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
        let tree = std::sync::Mutex::new(tree);
        // When the program exits, whatever it started goes too, which closes
        // the pipes it may have passed on.
        let wait = async {
            let status = child.wait().await;
            tree.lock().unwrap().kill();
            status
        };
        let work = async {
            let ((), out, err, status) = tokio::join!(
                feed,
                read_capped(stdout, cap),
                read_capped(stderr, cap),
                wait
            );
            (out, err, status)
        };
        let (out, err, status) = match tokio::time::timeout(timeout, work).await {
            Ok(done) => done,
            Err(_) => {
                tree.lock().unwrap().kill();
                return Err(ShellError::TimedOut {
                    program: command.program.clone(),
                    timeout,
                });
            }
        };
        let status = status
            .map_err(|e| ShellError::Failed(format!("waiting for `{}`: {e}", command.program)))?;
        let (stdout, stdout_truncated) = out.map_err(|e| {
            ShellError::Failed(format!("reading stdout of `{}`: {e}", command.program))
        })?;
        let (stderr, stderr_truncated) = err.map_err(|e| {
            ShellError::Failed(format!("reading stderr of `{}`: {e}", command.program))
        })?;
        let redactor = self.log.redactor();
        Ok(Output {
            exit_code: status.code(),
            stdout: redactor.redact_cut(&stdout),
            stderr: redactor.redact_cut(&stderr),
            stdout_truncated,
            stderr_truncated,
        })
    }
}

/// Read all of `pipe`, keeping at most `cap` bytes. Returns (kept, truncated).
pub(crate) async fn read_capped(
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
        let room = usize::try_from(cap)
            .unwrap_or(usize::MAX)
            .saturating_sub(kept.len());
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
