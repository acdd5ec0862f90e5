//! Running granted programs, argv only, never through a shell
//! (`cairn:plugin/shell`).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use cairn_guest::{shell::Command, Result};
//!
//! fn server_version() -> Result<String> {
//!     let output = Command::new("psql")
//!         .args(["--no-psqlrc", "-tAc", "show server_version"])
//!         .env("PGPASSWORD", "{{secret:pg-password}}")
//!         .timeout(Duration::from_secs(10))
//!         .run()?
//!         .check()?;
//!     Ok(output.stdout_text().trim().to_owned())
//! }
//! ```
//!
//! The environment starts empty; values may contain `{{secret:NAME}}`, which
//! the host substitutes. Output is captured up to the host's cap. For bulk
//! data use [`storage::create_from_command`](crate::storage::create_from_command),
//! which streams a command's stdout into the repository host-side.

use std::time::Duration;

use crate::__private::shell as wit;
use crate::{Error, Result};

/// A command to run: a granted program and its arguments.
#[derive(Clone, Debug)]
pub struct Command {
    inner: wit::Command,
    stdin: Option<Vec<u8>>,
}

impl Command {
    /// A command running `program`, a name granted in `allow.commands` (for
    /// example `pg_dump`).
    pub fn new(program: impl Into<String>) -> Self {
        Command {
            inner: wit::Command {
                program: program.into(),
                args: Vec::new(),
                env: Vec::new(),
                cwd: None,
                timeout_ms: None,
            },
            stdin: None,
        }
    }

    /// Add one argument, passed as it is (no shell expansion).
    #[must_use]
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.inner.args.push(arg.into());
        self
    }

    /// Add arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set an environment variable; the value may contain `{{secret:NAME}}`.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.env.push((key.into(), value.into()));
        self
    }

    /// Set several environment variables.
    #[must_use]
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.inner
            .env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Set the working directory; it must lie under a granted path.
    #[must_use]
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.inner.cwd = Some(dir.into());
        self
    }

    /// Kill the command (its whole process group) after `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.inner.timeout_ms = Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Feed `bytes` to the command's standard input (for [`Command::run`]
    /// only; the storage functions ignore it).
    #[must_use]
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    /// The program name.
    pub fn program(&self) -> &str {
        &self.inner.program
    }

    /// The arguments.
    pub fn get_args(&self) -> &[String] {
        &self.inner.args
    }

    pub(crate) fn as_wit(&self) -> &wit::Command {
        &self.inner
    }

    /// Run the command and wait for it. A non-zero exit is an [`Output`],
    /// not an error; use [`Output::check`] to make it one.
    ///
    /// # Errors
    ///
    /// `denied` for a program the job does not grant, `not-found` for a
    /// granted program that is not installed, `limit` on timeout.
    pub fn run(&self) -> Result<Output> {
        let output = wit::run(&self.inner, self.stdin.as_deref()).map_err(Error::from_wit)?;
        Ok(Output::from_wit(output, &self.inner.program))
    }
}

/// How a command ended and what it printed.
#[derive(Clone, Debug)]
pub struct Output {
    /// Exit code; `None` when the process was killed by a signal.
    pub exit_code: Option<i32>,
    /// Captured standard output, at most the host's output cap.
    pub stdout: Vec<u8>,
    /// Captured standard error, at most the host's output cap.
    pub stderr: Vec<u8>,
    /// Whether stdout was cut at the cap.
    pub stdout_truncated: bool,
    /// Whether stderr was cut at the cap.
    pub stderr_truncated: bool,
    program: String,
}

impl Output {
    pub(crate) fn from_wit(output: wit::Output, program: &str) -> Self {
        Output {
            exit_code: output.exit_code,
            stdout: output.stdout,
            stderr: output.stderr,
            stdout_truncated: output.stdout_truncated,
            stderr_truncated: output.stderr_truncated,
            program: program.to_owned(),
        }
    }

    /// Whether the command exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// Standard output as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The last non-empty line of standard error, if any.
    pub fn last_stderr_line(&self) -> Option<String> {
        String::from_utf8_lossy(&self.stderr)
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned)
    }

    /// The program that produced this output.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The output itself if the command exited with code 0.
    ///
    /// # Errors
    ///
    /// `failed("command `pg_dump` exited with code 1: <last stderr line>")`
    /// otherwise.
    pub fn check(self) -> Result<Self> {
        if self.success() {
            return Ok(self);
        }
        let how = match self.exit_code {
            Some(code) => format!("exited with code {code}"),
            None => "was killed by a signal".to_owned(),
        };
        let mut message = format!("command `{}` {how}", self.program);
        if let Some(line) = self.last_stderr_line() {
            message.push_str(": ");
            message.push_str(&line);
        }
        Err(Error::failed(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(code: Option<i32>, stderr: &str) -> Output {
        Output::from_wit(
            wit::Output {
                exit_code: code,
                stdout: b"out\n".to_vec(),
                stderr: stderr.as_bytes().to_vec(),
                stdout_truncated: false,
                stderr_truncated: false,
            },
            "pg_dump",
        )
    }

    #[test]
    fn check_names_program_code_and_last_stderr_line() {
        let err = output(Some(2), "warming up\nno such database\n\n")
            .check()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "command `pg_dump` exited with code 2: no such database"
        );
        let err = output(None, "").check().unwrap_err();
        assert_eq!(err.to_string(), "command `pg_dump` was killed by a signal");
        assert_eq!(output(Some(0), "").check().unwrap().stdout_text(), "out\n");
    }

    #[test]
    fn builder_collects_args_and_env() {
        let c = Command::new("pg_dump")
            .arg("-Fc")
            .args(["-d", "app"])
            .env("PGPASSWORD", "{{secret:pg}}")
            .envs([("A", "1")])
            .cwd("/srv")
            .timeout(Duration::from_secs(2));
        assert_eq!(c.get_args(), ["-Fc", "-d", "app"]);
        assert_eq!(c.as_wit().env.len(), 2);
        assert_eq!(c.as_wit().timeout_ms, Some(2000));
    }
}
