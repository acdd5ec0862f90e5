//! `command`: a Function that runs a granted program, argv only (never a
//! shell), and can stream its output into the run's snapshot or feed it an
//! artifact. (It is the Function `command`; the Task `builtin:command`,
//! which runs a vendor's backup script as a whole job, is `tasks/command`.)
//!
//! # Params
//!
//! - `command` (required): the program, granted in `allow.commands`, then
//!   its arguments: `["mariadb-dump", "--all-databases"]`.
//! - `env` (values may contain `{{secret:NAME}}`; the environment otherwise
//!   starts empty), `cwd` (under a granted path), `timeout` (a duration such
//!   as `30s` or `5m`, or a number of seconds; the process group is killed
//!   then).
//! - At most one of:
//!   - `artifact` (backup runs): stream the command's stdout straight into
//!     stream artifact `artifact`, host-side: the bytes never pass through
//!     the module, so a dump of any size takes no module memory.
//!   - `from-artifact` (restore runs): feed stream artifact `from-artifact`
//!     into the command's stdin, host-side.
//!   - `stdin`: a text for the command's stdin.
//! - `expect-exit` (default `0`): the exit code, or list of codes, that
//!   count as success. With `artifact` only `0` is possible: the host keeps
//!   the artifact only if the command succeeds.
//!
//! # Result
//!
//! - Plain run or `from-artifact`: `{"exit_code": 0, "stdout": "…",
//!   "stderr": "…", "stdout_truncated": false, "stderr_truncated": false}`,
//!   output captured up to the host's cap (invalid UTF-8 replaced), plus
//!   `"artifact"` with `from-artifact`.
//! - `artifact`: `{"artifact": "db.sql", "bytes": 52428800}`.
//!
//! An exit code not in `expect-exit`, or death by a signal, is an error
//! quoting the last lines of stderr.
//!
//! # Example (pipeline step or task)
//!
//! ```ignore
//! functions::call("command", &json!({
//!     "command": ["mariadb-dump", "--single-transaction", "app"],
//!     "env": {"MYSQL_PWD": "{{secret:DB_PASSWORD}}"},
//!     "artifact": "app.sql",
//! }))?;
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_guest::shell::{Command, Output};
use cairn_guest::{
    Description, Error, ErrorContext, Function, Param, Result, Value, from_params, json, log,
    parse_duration,
};
use serde::Deserialize;

/// How many lines of stderr an error quotes.
const ERROR_LINES: usize = 5;

/// How many characters of stderr an error quotes at most.
const ERROR_CHARS: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    timeout: Option<Value>,
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    expect_exit: Option<Value>,
    #[serde(default)]
    artifact: Option<String>,
    #[serde(default)]
    from_artifact: Option<String>,
}

/// Where the command's stdin comes from and its stdout goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Run it, stdin from the `stdin` param (if any), output captured.
    Run,
    /// Stream stdout into this artifact.
    IntoArtifact(String),
    /// Feed this artifact into stdin.
    FromArtifact(String),
}

/// A checked plan: the command, the exit codes that mean success, the mode.
#[derive(Debug)]
struct Plan {
    command: Command,
    expect_exit: Vec<i32>,
    mode: Mode,
}

/// A duration param: a string such as `30s` or a number of seconds.
fn duration_param(name: &str, value: &Value) -> Result<Duration> {
    let invalid = || {
        Error::invalid(format!(
            "invalid params: `{name}` must be a duration such as \"30s\" or a positive number of \
             seconds, got {value}"
        ))
    };
    let duration = match value {
        Value::String(text) => {
            parse_duration(text).map_err(|e| e.context(format!("invalid params: `{name}`")))?
        }
        Value::Number(n) => n
            .as_f64()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(invalid)?,
        _ => return Err(invalid()),
    };
    if duration.is_zero() {
        return Err(invalid());
    }
    Ok(duration)
}

/// The exit codes from `expect-exit`: one code or a list.
fn exit_codes(value: Option<Value>) -> Result<Vec<i32>> {
    let items = match value {
        None | Some(Value::Null) => return Ok(vec![0]),
        Some(Value::Array(items)) => items,
        Some(one) => vec![one],
    };
    if items.is_empty() {
        return Err(Error::invalid(
            "invalid params: `expect-exit` is an empty list; leave it out to expect 0",
        ));
    }
    items
        .iter()
        .map(|v| {
            v.as_i64()
                .and_then(|c| i32::try_from(c).ok())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "invalid params: `expect-exit` must be an exit code or a list of them, got {v}"
                    ))
                })
        })
        .collect()
}

/// An artifact name param: not empty.
fn artifact_name(param: &str, name: String) -> Result<String> {
    if name.trim().is_empty() {
        return Err(Error::invalid(format!(
            "invalid params: `{param}` is empty; name the artifact, e.g. \"app.sql\""
        )));
    }
    Ok(name)
}

impl Plan {
    fn new(params: Params) -> Result<Self> {
        let (program, args) = params.command.split_first().ok_or_else(|| {
            Error::invalid(
                "invalid params: `command` is empty; give the program and its arguments, e.g. \
                 [\"mariadb-dump\", \"app\"]",
            )
        })?;
        if program.is_empty() {
            return Err(Error::invalid(
                "invalid params: the program (first element of `command`) is empty",
            ));
        }
        let chosen: Vec<&str> = [
            ("artifact", params.artifact.is_some()),
            ("from-artifact", params.from_artifact.is_some()),
            ("stdin", params.stdin.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if chosen.len() > 1 {
            return Err(Error::invalid(format!(
                "invalid params: `{}` cannot be combined; set at most one",
                chosen.join("` and `")
            )));
        }
        let expect_exit = exit_codes(params.expect_exit)?;
        let mode = match (params.artifact, params.from_artifact) {
            (Some(name), _) => {
                if expect_exit != [0] {
                    return Err(Error::invalid(
                        "invalid params: with `artifact` the command must exit 0 (the host keeps \
                         the artifact only then); leave out `expect-exit`",
                    ));
                }
                Mode::IntoArtifact(artifact_name("artifact", name)?)
            }
            (None, Some(name)) => Mode::FromArtifact(artifact_name("from-artifact", name)?),
            (None, None) => Mode::Run,
        };
        let mut command = Command::new(program.as_str())
            .args(args.iter().cloned())
            .envs(params.env);
        if let Some(cwd) = params.cwd {
            command = command.cwd(cwd);
        }
        if let Some(timeout) = &params.timeout {
            command = command.timeout(duration_param("timeout", timeout)?);
        }
        if let Some(stdin) = params.stdin {
            command = command.stdin(stdin);
        }
        Ok(Plan {
            command,
            expect_exit,
            mode,
        })
    }

    /// `output` as JSON if its exit code is expected, else the error.
    fn check(&self, output: &Output) -> Result<Value> {
        let expected = output
            .exit_code
            .is_some_and(|code| self.expect_exit.contains(&code));
        if !expected {
            return Err(Error::failed(failure_message(
                output.program(),
                output.exit_code,
                &self.expect_exit,
                &output.stderr_text(),
            )));
        }
        Ok(json!({
            "exit_code": output.exit_code,
            "stdout": output.stdout_text(),
            "stderr": output.stderr_text(),
            "stdout_truncated": output.stdout_truncated,
            "stderr_truncated": output.stderr_truncated,
        }))
    }

    fn run(&self) -> Result<Value> {
        let program = self.command.program();
        match &self.mode {
            Mode::Run => {
                log::info(format!("running `{program}`"));
                let output = self.command.run()?;
                self.check(&output)
            }
            Mode::IntoArtifact(name) => {
                log::info(format!("streaming the output of `{program}` into `{name}`"));
                let artifact = cairn_guest::storage::create_from_command(name, &self.command)
                    .with_context(|| format!("storing the output of `{program}` as `{name}`"))?;
                Ok(json!({ "artifact": artifact.name, "bytes": artifact.size }))
            }
            Mode::FromArtifact(name) => {
                log::info(format!("feeding `{name}` into `{program}`"));
                let output = cairn_guest::storage::restore_to_command(name, &self.command)
                    .with_context(|| format!("feeding `{name}` into `{program}`"))?;
                let mut result = self.check(&output)?;
                result["artifact"] = json!(name);
                Ok(result)
            }
        }
    }
}

/// "command `x` exited with code 2 (expected 0): <last stderr lines>".
fn failure_message(program: &str, code: Option<i32>, expected: &[i32], stderr: &str) -> String {
    let how = match code {
        Some(code) => format!("exited with code {code}"),
        None => "was killed by a signal".to_owned(),
    };
    let expected: Vec<String> = expected.iter().map(i32::to_string).collect();
    let mut message = format!(
        "command `{program}` {how} (expected {})",
        expected.join(" or ")
    );
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(ERROR_LINES)..].join("; ");
    if !tail.is_empty() {
        let skip = tail.chars().count().saturating_sub(ERROR_CHARS);
        let tail: String = tail.chars().skip(skip).collect();
        message.push_str(": ");
        if skip > 0 {
            message.push('…');
        }
        message.push_str(&tail);
    }
    message
}

struct CommandFunction;

impl Function for CommandFunction {
    fn describe() -> Description {
        Description::new("command", env!("CARGO_PKG_VERSION"))
            .summary(
                "Runs a granted program; streams its stdout into an artifact or an artifact into \
                 its stdin",
            )
            .param(Param::required(
                "command",
                "Program (granted in allow.commands) and arguments, e.g. [\"mariadb-dump\", \"app\"]",
            ))
            .param(Param::optional(
                "env",
                "Environment variables; values may contain {{secret:NAME}}",
                json!({}),
            ))
            .param(Param::optional(
                "cwd",
                "Working directory, under a granted path",
                None,
            ))
            .param(Param::optional(
                "timeout",
                "Kill the command after this long (e.g. 30s, 2h)",
                None,
            ))
            .param(Param::optional("stdin", "Text fed to stdin", None))
            .param(Param::optional(
                "expect-exit",
                "Exit code or list of exit codes that mean success",
                json!(0),
            ))
            .param(Param::optional(
                "artifact",
                "Backup: stream stdout into this stream artifact",
                None,
            ))
            .param(Param::optional(
                "from-artifact",
                "Restore: feed this stream artifact into stdin",
                None,
            ))
            .needs_command("{command[0]}")
            .needs_path("{cwd}")
    }

    fn call(params: Value) -> Result<Value> {
        let params: Params = from_params(params)?;
        Plan::new(params)?.run()
    }
}

cairn_guest::export_function!(CommandFunction);

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_guest::ErrorKind;

    fn plan(params: Value) -> Result<Plan> {
        Plan::new(from_params(params)?)
    }

    #[test]
    fn params_choose_a_mode() {
        let p = plan(json!({"command": ["cat", "-"]})).unwrap();
        assert_eq!(p.mode, Mode::Run);
        assert_eq!(p.expect_exit, [0]);
        assert_eq!(p.command.program(), "cat");
        assert_eq!(p.command.get_args(), ["-"]);
        let p = plan(json!({"command": ["dump"], "artifact": "x.sql", "timeout": "1m"})).unwrap();
        assert_eq!(p.mode, Mode::IntoArtifact("x.sql".into()));
        let p = plan(json!({"command": ["load"], "from-artifact": "x.sql", "expect-exit": [0, 1]}))
            .unwrap();
        assert_eq!(p.mode, Mode::FromArtifact("x.sql".into()));
        assert_eq!(p.expect_exit, [0, 1]);
    }

    #[test]
    fn bad_params_are_refused() {
        let cases = [
            (json!({}), "missing field `command`"),
            (json!({"command": []}), "`command` is empty"),
            (json!({"command": [""]}), "the program"),
            (
                json!({"command": ["a"], "artifact": "x", "from-artifact": "y"}),
                "`artifact` and `from-artifact` cannot be combined",
            ),
            (
                json!({"command": ["a"], "artifact": "x", "stdin": "y"}),
                "`artifact` and `stdin` cannot be combined",
            ),
            (
                json!({"command": ["a"], "artifact": "x", "expect-exit": 1}),
                "must exit 0",
            ),
            (
                json!({"command": ["a"], "artifact": " "}),
                "`artifact` is empty",
            ),
            (json!({"command": ["a"], "timeout": "soon"}), "`timeout`"),
            (
                json!({"command": ["a"], "timeout": -1}),
                "`timeout` must be",
            ),
            (
                json!({"command": ["a"], "expect-exit": "0"}),
                "`expect-exit`",
            ),
            (json!({"command": ["a"], "expect-exit": []}), "empty list"),
            (
                json!({"command": ["a"], "args": []}),
                "unknown field `args`",
            ),
        ];
        for (params, expected) in cases {
            let err = plan(params.clone()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{params}");
            assert!(err.to_string().contains(expected), "{params}: {err}");
        }
    }

    #[test]
    fn failures_quote_the_end_of_stderr() {
        assert_eq!(
            failure_message("dump", Some(2), &[0], "a\n\nb\nc\nd\ne\nf\n"),
            "command `dump` exited with code 2 (expected 0): b; c; d; e; f"
        );
        assert_eq!(
            failure_message("dump", None, &[0, 3], ""),
            "command `dump` was killed by a signal (expected 0 or 3)"
        );
        let long = failure_message("x", Some(1), &[0], &"y".repeat(5000));
        assert!(
            long.ends_with(&format!("…{}", "y".repeat(ERROR_CHARS))),
            "{long}"
        );
    }
}
