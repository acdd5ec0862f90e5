//! `cairn:plugin/log`: guest log lines into `tracing` and the run record.
//!
//! [`RunLog`] is the per-run log shared by every capability (and the captured
//! guest stdout/stderr). It redacts every secret value known to the run before
//! a line is stored or printed, and keeps at most [`MAX_LINES`] lines in memory.

use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker};

use super::bindings::interfaces::log::{self, Field, Host, Level};
use super::{Capability, HostShared, RunContext};
use crate::state::LogLine;
use crate::sys::now_ms;

/// Lines kept in memory per run; later lines are counted, not kept.
pub const MAX_LINES: usize = 10_000;

/// Replaces secret values with `***`.
#[derive(Debug, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl Redactor {
    /// A redactor for these secret values (empty values are ignored).
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        // Longest first, so a secret containing another is redacted whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        Self { values }
    }

    /// `text` with every secret value replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        out
    }
}

struct Inner {
    lines: Vec<LogLine>,
    dropped: usize,
}

/// The log of one run: shared, cheap to clone.
#[derive(Clone)]
pub struct RunLog {
    job: Arc<str>,
    run_id: Arc<str>,
    redactor: Arc<Redactor>,
    inner: Arc<Mutex<Inner>>,
}

impl RunLog {
    /// An empty log for run `run_id` of `job`.
    pub fn new(job: &str, run_id: &str, redactor: Arc<Redactor>) -> Self {
        Self {
            job: job.into(),
            run_id: run_id.into(),
            redactor,
            inner: Arc::new(Mutex::new(Inner {
                lines: Vec::new(),
                dropped: 0,
            })),
        }
    }

    /// The run's redactor.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Record a line (redacted) and emit it through `tracing`.
    pub fn push(&self, level: &str, message: &str, fields: &[(String, String)]) {
        let message = self.redactor.redact(message);
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.clone(), self.redactor.redact(v)))
            .collect();
        let rendered = if fields.is_empty() {
            message.clone()
        } else {
            let kv: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{message} {}", kv.join(" "))
        };
        let (job, run) = (&*self.job, &*self.run_id);
        match level {
            "error" => tracing::error!(target: "cairn::guest", job, run, "{rendered}"),
            "warn" => tracing::warn!(target: "cairn::guest", job, run, "{rendered}"),
            "info" => tracing::info!(target: "cairn::guest", job, run, "{rendered}"),
            "debug" => tracing::debug!(target: "cairn::guest", job, run, "{rendered}"),
            _ => tracing::trace!(target: "cairn::guest", job, run, "{rendered}"),
        }
        let mut inner = self.inner.lock().unwrap();
        if inner.lines.len() < MAX_LINES {
            inner.lines.push(LogLine {
                at_ms: now_ms(),
                level: level.to_string(),
                message,
                fields,
            });
        } else {
            inner.dropped += 1;
        }
    }

    /// Host-side line (not from the guest).
    pub fn host(&self, level: &str, message: &str) {
        self.push(level, message, &[]);
    }

    /// All lines so far (plus a final note if some were dropped).
    pub fn lines(&self) -> Vec<LogLine> {
        let inner = self.inner.lock().unwrap();
        let mut lines = inner.lines.clone();
        if inner.dropped > 0 {
            lines.push(LogLine {
                at_ms: now_ms(),
                level: "warn".into(),
                message: format!("… {} more log lines dropped", inner.dropped),
                fields: vec![],
            });
        }
        lines
    }

    /// The last `n` lines whose message starts with `prefix`, oldest first.
    pub fn tail(&self, prefix: &str, n: usize) -> Vec<String> {
        let inner = self.inner.lock().unwrap();
        let mut out: Vec<String> = inner
            .lines
            .iter()
            .rev()
            .filter(|l| l.message.starts_with(prefix))
            .take(n)
            .map(|l| l.message.clone())
            .collect();
        out.reverse();
        out
    }
}

/// The `log` capability of one store. Always granted.
pub struct LogCap {
    log: RunLog,
}

impl Capability for LogCap {
    const INTERFACE: &'static str = "cairn:plugin/log";

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut Self,
    ) -> wasmtime::Result<()> {
        log::add_to_linker::<T, HasSelf<Self>>(linker, get)
    }

    fn prepare(run: &RunContext, _host: &HostShared) -> anyhow::Result<Self> {
        Ok(Self {
            log: run.log.clone(),
        })
    }
}

impl Host for LogCap {
    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<Field>,
    ) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        let fields: Vec<(String, String)> = fields.into_iter().map(|f| (f.key, f.value)).collect();
        self.log.push(level, &message, &fields);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_hides_every_secret_value() {
        let r = Redactor::new([
            "hunter2".to_string(),
            "hunter2-long".to_string(),
            String::new(),
        ]);
        assert_eq!(r.redact("pw=hunter2-long x=hunter2"), "pw=*** x=***");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn run_log_redacts_and_caps() {
        let log = RunLog::new("j", "r", Arc::new(Redactor::new(["s3cret".to_string()])));
        log.push("info", "token s3cret", &[("k".into(), "s3cret".into())]);
        let lines = log.lines();
        assert_eq!(lines[0].message, "token ***");
        assert_eq!(lines[0].fields[0].1, "***");
        for _ in 0..MAX_LINES + 5 {
            log.host("debug", "x");
        }
        let lines = log.lines();
        assert_eq!(lines.len(), MAX_LINES + 1);
        assert!(
            lines
                .last()
                .unwrap()
                .message
                .contains("6 more log lines dropped")
        );
    }
}
