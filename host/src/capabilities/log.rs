//! `cairn:plugin/log`: guest log lines into `tracing` and the run record.
//!
//! [`RunLog`] is the per-run log shared by every capability (and the captured
//! guest stdout/stderr). It redacts every secret value known to the run
//! before a line is stored or printed, cuts a line longer than the job's
//! `log-line-limit`, and keeps at most [`MAX_LINES`] lines and `log-limit`
//! bytes: later lines are counted, not kept (nor printed).

use std::sync::{Arc, Mutex};

use wasmtime::component::{HasSelf, Linker};

use super::bindings::interfaces::log::{self, Field, Host, Level};
use super::redact::Redactor;
use super::{Capability, HostShared, RunContext};
use crate::model::Limits;
use crate::state::LogLine;
use crate::sys::now_ms;

/// Lines kept in memory per run; later lines are counted, not kept.
pub const MAX_LINES: usize = 10_000;

struct Inner {
    lines: Vec<LogLine>,
    bytes: u64,
    dropped: usize,
    /// Lines already handed to the state store ([`RunLog::take_unstored`]).
    stored: usize,
}

/// How much of a log a run keeps.
#[derive(Debug, Clone, Copy)]
struct Caps {
    line: usize,
    bytes: u64,
}

/// The log of one run: shared, cheap to clone.
#[derive(Clone)]
pub struct RunLog {
    job: Arc<str>,
    run_id: Arc<str>,
    redactor: Arc<Redactor>,
    caps: Caps,
    inner: Arc<Mutex<Inner>>,
}

impl RunLog {
    /// An empty log for run `run_id` of `job`, within `limits`.
    pub fn new(job: &str, run_id: &str, redactor: Arc<Redactor>, limits: &Limits) -> Self {
        Self {
            job: job.into(),
            run_id: run_id.into(),
            redactor,
            caps: Caps {
                line: usize::try_from(limits.log_line).unwrap_or(usize::MAX),
                bytes: limits.log_bytes,
            },
            inner: Arc::new(Mutex::new(Inner {
                lines: Vec::new(),
                bytes: 0,
                dropped: 0,
                stored: 0,
            })),
        }
    }

    /// The run's redactor.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// The run's redactor, shared.
    pub fn redactor_arc(&self) -> Arc<Redactor> {
        self.redactor.clone()
    }

    /// Record a line (cut, redacted) and emit it through `tracing`, unless
    /// the run's log is full (then it is only counted).
    pub fn push(&self, level: &str, message: &str, fields: &[(String, String)]) {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        {
            let mut inner = self.inner.lock().unwrap();
            let kept = size.min(self.caps.line) as u64;
            if inner.lines.len() >= MAX_LINES || inner.bytes + kept > self.caps.bytes {
                inner.dropped += 1;
                return;
            }
            inner.bytes += kept;
        }
        // Cut first (never mid-character), then redact: a secret cut in two
        // is still masked at the cut.
        let mut budget = self.caps.line;
        let mut cut = |text: &str| -> String {
            let keep = floor_char_boundary(text, budget);
            budget -= keep;
            if keep < text.len() {
                let kept = self.redactor.redact_cut(&text.as_bytes()[..keep]);
                format!(
                    "{}… ({} more bytes cut)",
                    String::from_utf8_lossy(&kept),
                    text.len() - keep
                )
            } else {
                self.redactor.redact(text)
            }
        };
        let message = cut(message);
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| (cut(k), cut(v))).collect();
        let (job, run) = (&*self.job, &*self.run_id);
        // The job and run are the event's own fields: a guest field that
        // repeats one of them is kept in the run record, not printed twice.
        let kv: Vec<String> = fields
            .iter()
            .filter(|(k, v)| {
                let repeats_job = k == "job" && v == job;
                let repeats_run = matches!(k.as_str(), "run" | "run-id" | "run_id") && v == run;
                !repeats_job && !repeats_run
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let rendered = if kv.is_empty() {
            message.clone()
        } else {
            format!("{message} {}", kv.join(" "))
        };
        match level {
            "error" => tracing::error!(target: "cairn::guest", job, run, "{rendered}"),
            "warn" => tracing::warn!(target: "cairn::guest", job, run, "{rendered}"),
            "info" => tracing::info!(target: "cairn::guest", job, run, "{rendered}"),
            "debug" => tracing::debug!(target: "cairn::guest", job, run, "{rendered}"),
            _ => tracing::trace!(target: "cairn::guest", job, run, "{rendered}"),
        }
        self.inner.lock().unwrap().lines.push(LogLine {
            at_ms: now_ms(),
            level: level.to_string(),
            message,
            fields,
        });
    }

    /// Host-side line (not from the guest).
    pub fn host(&self, level: &str, message: &str) {
        self.push(level, message, &[]);
    }

    /// All lines so far (plus a final note if some were dropped).
    pub fn lines(&self) -> Vec<LogLine> {
        let inner = self.inner.lock().unwrap();
        let mut lines = inner.lines.clone();
        lines.extend(self.dropped_note(inner.dropped));
        lines
    }

    /// The final note standing for `dropped` lines, if any.
    fn dropped_note(&self, dropped: usize) -> Option<LogLine> {
        (dropped > 0).then(|| LogLine {
            at_ms: now_ms(),
            level: "warn".into(),
            message: format!(
                "… {dropped} more log lines dropped (the run's log keeps {MAX_LINES} lines and {} bytes)",
                crate::units::format_size(self.caps.bytes)
            ),
            fields: vec![],
        })
    }

    /// The lines not yet handed out by this method, oldest first: the runner
    /// stores them while the run goes, so a killed run keeps what it logged.
    /// With `last`, also the final note of dropped lines, if any.
    pub fn take_unstored(&self, last: bool) -> Vec<LogLine> {
        let mut inner = self.inner.lock().unwrap();
        let from = inner.stored.min(inner.lines.len());
        inner.stored = inner.lines.len();
        let mut lines = inner.lines[from..].to_vec();
        if last {
            lines.extend(self.dropped_note(inner.dropped));
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

/// The largest index ≤ `at` that is a character boundary of `text`.
fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
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

    fn log(secret: &str, limits: &Limits) -> RunLog {
        RunLog::new(
            "j",
            "r",
            Arc::new(Redactor::new([secret.to_string()])),
            limits,
        )
    }

    #[test]
    fn run_log_redacts_and_caps_lines() {
        let log = log("s3cret", &Limits::default());
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

    #[test]
    fn long_lines_are_cut_and_the_log_stops_at_its_byte_limit() {
        let limits = Limits {
            log_line: 100,
            log_bytes: 1000,
            ..Limits::default()
        };
        let secret = "correct-horse-battery-staple";
        let log = log(secret, &limits);
        let long = format!("{}{secret}{}", "é".repeat(40), "x".repeat(5000));
        log.host("info", &long);
        let line = &log.lines()[0].message;
        assert!(line.len() < 160, "{}", line.len());
        assert!(line.contains("more bytes cut"), "{line}");
        assert!(!line.contains("correct-horse"), "{line}");
        for _ in 0..20 {
            log.host("info", &"y".repeat(100));
        }
        let lines = log.lines();
        assert_eq!(lines.len(), 10 + 1, "1000 bytes hold ten 100-byte lines");
        assert!(
            lines
                .last()
                .unwrap()
                .message
                .contains("11 more log lines dropped")
        );
    }
}
