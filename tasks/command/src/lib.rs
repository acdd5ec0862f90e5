//! `builtin:command`: a Task that runs a granted command (a vendor's own
//! backup script, say), logs its output, reports to an optional monitoring
//! URL and keeps the last result in the job's state.
//!
//! Params: `command` (program then arguments), `env` (values may contain
//! `{{secret:NAME}}`), `ping-url` (healthchecks.io style: success is POSTed
//! to the URL, failure to `<url>/fail`), `restore-command` and `timeout`
//! (seconds). State keys, as JSON: `last-exit-code` (a number, or `null`
//! when the command did not exit normally), `last-run-ms` and `runs`.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_guest::http::Request;
use cairn_guest::shell::{Command, Output};
use cairn_guest::{
    Context, Description, Error, Param, Result, Task, Value, json, log, state, time,
};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Params {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    ping_url: Option<String>,
    #[serde(default)]
    restore_command: Option<Vec<String>>,
    #[serde(default)]
    timeout: Option<f64>,
}

impl Params {
    fn timeout(&self) -> Result<Option<Duration>> {
        self.timeout
            .map(|s| {
                Duration::try_from_secs_f64(s)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "invalid params: `timeout` must be a positive number of seconds, got {s}"
                        ))
                    })
            })
            .transpose()
    }

    /// The command `argv` (from param `key`) with this job's env and timeout.
    fn command(&self, key: &str, argv: &[String]) -> Result<Command> {
        let (program, args) = argv.split_first().ok_or_else(|| {
            Error::invalid(format!(
                "invalid params: `{key}` is empty; give the program and its arguments, e.g. [\"backup.sh\", \"--full\"]"
            ))
        })?;
        let mut command = Command::new(program.as_str())
            .args(args.iter().cloned())
            .envs(self.env.clone());
        if let Some(timeout) = self.timeout()? {
            command = command.timeout(timeout);
        }
        Ok(command)
    }
}

/// Run `command`, logging stdout lines at info and stderr lines at warn.
fn run_logged(command: &Command) -> Result<Output> {
    log::info(format!(
        "running `{}` with {} argument(s)",
        command.program(),
        command.get_args().len()
    ));
    let output = command.run()?;
    for line in output.stdout_text().lines() {
        log::info(line);
    }
    for line in output.stderr_text().lines() {
        log::warn(line);
    }
    if output.stdout_truncated || output.stderr_truncated {
        log::warn(format!(
            "output of `{}` was cut at the host's capture limit",
            command.program()
        ));
    }
    Ok(output)
}

/// POST `summary` to the monitoring URL: `url` on success, `url/fail` on
/// failure. A failed ping is logged, not fatal: the backup itself is what
/// the run records.
fn ping(url: &str, success: bool, summary: &Value) {
    let url = if success {
        url.to_owned()
    } else {
        format!("{}/fail", url.trim_end_matches('/'))
    };
    let result = Request::post(url.as_str())
        .json(summary)
        .and_then(|r| r.timeout(Duration::from_secs(10)).send())
        .and_then(|r| r.error_for_status());
    if let Err(e) = result {
        log::warn(format!("could not ping the monitoring URL: {e}"));
    }
}

/// Record this run in the job's state; returns the new run count.
fn record_run(exit_code: Option<i32>, started_ms: u64) -> Result<u64> {
    let runs = state::get_json::<u64>("runs")?.unwrap_or(0) + 1;
    state::set_json("last-exit-code", &exit_code)?;
    state::set_json("last-run-ms", &started_ms)?;
    state::set_json("runs", &runs)?;
    Ok(runs)
}

struct CommandTask;

impl Task for CommandTask {
    fn describe() -> Description {
        Description::new("command", env!("CARGO_PKG_VERSION"))
            .summary(
                "Runs a granted command, e.g. a vendor's own backup script, logs its output, \
                 reports to an optional monitoring URL and keeps the last result in state",
            )
            .param(Param::required(
                "command",
                "Program and arguments, e.g. [\"/opt/vendor/backup.sh\", \"--full\"]",
            ))
            .param(Param::optional(
                "env",
                "Environment variables; values may contain {{secret:NAME}}",
                json!({}),
            ))
            .param(Param::optional(
                "ping-url",
                "Monitoring URL: success is POSTed to it, failure to <ping-url>/fail",
                None,
            ))
            .param(Param::optional(
                "restore-command",
                "Program and arguments that restore; without it the job cannot restore",
                None,
            ))
            .param(Param::optional(
                "timeout",
                "Timeout in seconds (default: the run's)",
                None,
            ))
            .needs_command("{command[0]}")
            .needs_command("{restore-command[0]}")
            .needs_http("{ping-url}")
    }

    fn backup(ctx: Context) -> Result<Value> {
        let params: Params = ctx.params()?;
        let command = params.command("command", &params.command)?;
        let started_ms = time::now_ms();
        let outcome = run_logged(&command);
        let duration_ms = time::now_ms().saturating_sub(started_ms);

        let exit_code = outcome.as_ref().ok().and_then(|o| o.exit_code);
        let runs = record_run(exit_code, started_ms)?;
        let outcome = outcome.and_then(Output::check);

        if let Some(url) = &params.ping_url {
            let mut summary = json!({
                "job": ctx.job(),
                "run_id": ctx.run_id(),
                "exit_code": exit_code,
                "duration_ms": duration_ms,
            });
            if let Err(e) = &outcome {
                summary["error"] = json!(e.to_string());
            }
            ping(url, outcome.is_ok(), &summary);
        }

        let output = outcome?;
        Ok(json!({
            "exit_code": output.exit_code,
            "runs": runs,
            "stdout_bytes": output.stdout.len(),
            "duration_ms": duration_ms,
        }))
    }

    fn restore(ctx: Context) -> Result<Value> {
        let params: Params = ctx.params()?;
        let argv = params.restore_command.as_deref().ok_or_else(|| {
            Error::unsupported(
                "this job has no restore-command, so it cannot restore: set params.restore-command \
                 to the program and arguments that restore what `command` backs up",
            )
        })?;
        let command = params.command("restore-command", argv)?;
        let output = run_logged(&command)?.check()?;
        Ok(json!({
            "exit_code": output.exit_code,
            "stdout_bytes": output.stdout.len(),
        }))
    }
}

cairn_guest::export_task!(CommandTask);
