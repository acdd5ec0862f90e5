//! How the command line shows things: times, sizes, a run's live progress
//! (a terminal bar, plain lines, or `--json` status messages) and its
//! summary at the end, like restic's.
//!
//! Times are local to the second (`--utc`: UTC), sizes in binary units;
//! `--json` keeps exact values (milliseconds since the epoch, bytes).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use cairn::capabilities::progress::{Progress, ProgressSink};
use cairn::runner::{PhaseSink, RunReport};
use cairn::units::format_size;

/// How output is shown, from the global flags.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Style {
    /// Newline-delimited JSON on stdout.
    pub json: bool,
}

static UTC: OnceLock<bool> = OnceLock::new();

/// Remember `--utc` for [`format_time`] (and the log's timestamps).
pub(crate) fn set_utc(utc: bool) {
    let _ = UTC.set(utc);
}

fn utc() -> bool {
    UTC.get().copied().unwrap_or(false)
}

/// `ms` since the Unix epoch as `2026-12-03 15:02:40` in local time, or
/// `2026-12-03 15:02:40Z` with `--utc`.
pub(crate) fn format_time(ms: i64) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(ms) else {
        return format!("{ms} ms");
    };
    if utc() {
        ts.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
    } else {
        ts.to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    }
}

/// Now, as [`format_time`] writes it.
pub(crate) fn format_now() -> String {
    format_time(jiff::Timestamp::now().as_millisecond())
}

/// Seconds as `0:07`, `12:03`, `1:02:03`.
pub(crate) fn format_secs(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The bar being drawn, so that log lines are printed above it.
static BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Log output to stderr that does not tear the progress bar.
pub(crate) struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Log lines' timestamps: local time (or UTC) to the second.
pub(crate) struct LogTime;

impl tracing_subscriber::fmt::time::FormatTime for LogTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{}", format_now())
    }
}

/// What a run has reported so far.
#[derive(Debug, Clone)]
struct Live {
    job: String,
    phase: String,
    /// The run's main phase (`backup`, `restore`), once seen.
    kind: String,
    /// Bytes moved (storage), and the latest report in bytes with a total.
    bytes: Option<Progress>,
    /// The task's own count of items.
    items: Option<Progress>,
    started: Instant,
}

impl Live {
    fn new(job: &str) -> Self {
        Self {
            job: job.to_string(),
            phase: "starting".into(),
            kind: "run".into(),
            bytes: None,
            items: None,
            started: Instant::now(),
        }
    }

    /// The phase shown once the run is over: what it did (`backup`).
    fn settle(&mut self) {
        if matches!(self.phase.as_str(), "committing" | "preparing" | "starting") {
            self.phase = self.kind.clone();
        }
    }

    fn record(&mut self, p: Progress) {
        if p.bytes {
            self.bytes = Some(p);
        } else {
            self.items = Some(p);
        }
    }

    fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// `sample: backup 12.0 MiB of 40.0 MiB, 3.1 MiB/s, 3 of 9 items, ETA 0:09`.
    fn line(&self) -> String {
        let secs = self.elapsed().max(0.001);
        let mut parts = vec![format!("{}: {}", self.job, self.phase)];
        let mut eta = None;
        if let Some(b) = self.bytes {
            let rate = b.done as f64 / secs;
            let total = b
                .total
                .map(|t| format!(" of {}", format_size(t)))
                .unwrap_or_default();
            parts.push(format!(
                "{}{total}, {}/s",
                format_size(b.done),
                format_size(rate as u64)
            ));
            if let Some(t) = b.total
                && rate > 0.0
                && t > b.done
            {
                eta = Some(t.saturating_sub(b.done) as f64 / rate);
            }
        }
        if let Some(i) = self.items {
            let total = i.total.map(|t| format!(" of {t}")).unwrap_or_default();
            parts.push(format!("{}{total} items", i.done));
            if let Some(t) = i.total
                && i.done > 0
                && t > i.done
                && eta.is_none()
            {
                eta = Some(t.saturating_sub(i.done) as f64 / (i.done as f64 / secs));
            }
        }
        if let Some(eta) = eta {
            parts.push(format!("ETA {}", format_secs(eta)));
        }
        let mut line = parts.remove(0);
        if !parts.is_empty() {
            line.push(' ');
            line.push_str(&parts.join(", "));
        }
        line
    }

    /// A restic-like `status` message for `--json`.
    fn status(&self, run_id: Option<&str>) -> Value {
        let mut v = json!({
            "message_type": "status",
            "job": self.job,
            "phase": self.phase,
            "seconds_elapsed": self.elapsed().floor() as u64,
        });
        if let Some(id) = run_id {
            v["run_id"] = json!(id);
        }
        if let Some(b) = self.bytes {
            v["bytes_done"] = json!(b.done);
            if let Some(t) = b.total {
                v["total_bytes"] = json!(t);
                if t > 0 {
                    v["percent_done"] = json!((b.done as f64 / t as f64).min(1.0));
                }
            }
        }
        if let Some(i) = self.items {
            v["items_done"] = json!(i.done);
            if let Some(t) = i.total {
                v["total_items"] = json!(t);
            }
        }
        v
    }
}

/// How a run's progress is shown while it goes.
enum Mode {
    /// A redrawing bar on a terminal.
    Bar(indicatif::ProgressBar),
    /// Plain lines, at most one every [`PLAIN_EVERY`].
    Plain { last: Option<Instant> },
    /// `--json` status messages, at most one every [`JSON_EVERY`].
    Json { last: Option<Instant> },
}

const PLAIN_EVERY: Duration = Duration::from_secs(10);
const JSON_EVERY: Duration = Duration::from_secs(1);

/// A run's live progress display.
pub(crate) struct RunProgress {
    state: Arc<Mutex<(Live, Mode)>>,
}

impl RunProgress {
    /// For a run of `job`: a bar when stderr is a terminal, `--json` status
    /// messages on stdout, else plain periodic lines on stderr.
    pub(crate) fn new(job: &str, style: Style) -> Self {
        let mode = if style.json {
            Mode::Json { last: None }
        } else if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {wide_msg} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            *BAR.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
            Mode::Bar(bar)
        } else {
            Mode::Plain { last: None }
        };
        let this = Self {
            state: Arc::new(Mutex::new((Live::new(job), mode))),
        };
        this.update(|_| {});
        this
    }

    fn update(&self, f: impl FnOnce(&mut Live)) {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (live, mode) = &mut *guard;
        f(live);
        match mode {
            Mode::Bar(bar) => bar.set_message(live.line()),
            Mode::Plain { last } => {
                // One line every PLAIN_EVERY while something is reported
                // (and one at the end, see `finish`).
                let since = last.unwrap_or(live.started);
                if (live.bytes.is_some() || live.items.is_some()) && since.elapsed() >= PLAIN_EVERY
                {
                    *last = Some(Instant::now());
                    eprintln!("{}", live.line());
                }
            }
            Mode::Json { last } => {
                if last.is_none_or(|t| t.elapsed() >= JSON_EVERY) {
                    *last = Some(Instant::now());
                    println!("{}", live.status(None));
                }
            }
        }
    }

    /// Where the run's progress reports go.
    pub(crate) fn sink(&self) -> ProgressSink {
        let this = self.clone_handle();
        Arc::new(move |_job: &str, p: Progress| this.update(|live| live.record(p)))
    }

    /// Where the run's phase goes.
    pub(crate) fn phase(&self) -> PhaseSink {
        let this = self.clone_handle();
        Arc::new(move |phase: &str| {
            this.update(|live| {
                if matches!(phase, "backup" | "restore") {
                    phase.clone_into(&mut live.kind);
                }
                phase.clone_into(&mut live.phase);
            });
        })
    }

    fn clone_handle(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }

    /// Stop: the bar is cleared; without a terminal the last progress
    /// line is printed (once), so that a log shows where the run got to.
    pub(crate) fn finish(&self) {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (live, mode) = &mut *guard;
        live.settle();
        match mode {
            Mode::Bar(bar) => {
                bar.finish_and_clear();
                *BAR.lock().unwrap_or_else(PoisonError::into_inner) = None;
            }
            Mode::Plain { .. } if live.bytes.is_some() || live.items.is_some() => {
                eprintln!("{}", live.line());
            }
            Mode::Plain { .. } => {}
            Mode::Json { .. } => println!("{}", live.status(None)),
        }
    }
}

/// Print how a run ended: restic's summary for a backup (stdout), the error
/// for a failed run (stderr); with `--json` one `summary` message.
pub(crate) fn print_report(report: &RunReport, style: Style) {
    let r = &report.run;
    let secs = r
        .finished_at_ms
        .map_or(0.0, |f| (f - r.started_at_ms) as f64 / 1000.0);
    if style.json {
        let mut v = json!({
            "message_type": "summary",
            "job": r.job,
            "run_id": r.id,
            "kind": r.kind.as_str(),
            "status": r.status.as_str(),
            "started_at_ms": r.started_at_ms,
            "finished_at_ms": r.finished_at_ms,
            "total_duration": secs,
            "snapshot_id": r.snapshot_id,
            "bytes": r.bytes,
            "error": r.error,
            "result": report.result,
            "run": r,
        });
        if let Some(s) = &report.summary
            && let (Some(obj), Ok(Value::Object(extra))) =
                (v.as_object_mut(), serde_json::to_value(s))
        {
            obj.extend(extra);
        }
        println!("{v}");
        return;
    }
    if let Some(e) = &r.error {
        let what = format!("{} of job `{}`", r.kind.as_str(), r.job);
        // The error often starts with the same words: say them once.
        let e: &str = e
            .strip_prefix(what.as_str())
            .and_then(|rest| rest.strip_prefix(": "))
            .unwrap_or(e.as_str());
        eprintln!("{what}: {} after {}", r.status.as_str(), format_secs(secs));
        eprintln!("error: {e}");
        eprintln!("(log: cairn runs show {})", r.id);
        return;
    }
    if let Some(s) = &report.summary {
        let col = |n: u64| format!("{n:>6}");
        println!(
            "Files:      {} new, {} changed, {} unchanged",
            col(s.files_new),
            col(s.files_changed),
            col(s.files_unmodified)
        );
        println!(
            "Dirs:       {} new, {} changed, {} unchanged",
            col(s.dirs_new),
            col(s.dirs_changed),
            col(s.dirs_unmodified)
        );
        println!(
            "Added to the repository: {} ({} stored)",
            format_size(s.data_added),
            format_size(s.data_added_packed)
        );
        println!();
        println!(
            "processed {} files, {} in {}",
            s.total_files_processed,
            format_size(s.total_bytes_processed),
            format_secs(secs)
        );
    }
    match (&r.snapshot_id, r.kind.as_str()) {
        (Some(id), "backup") => println!("snapshot {id} saved"),
        (Some(id), _) => println!(
            "{} of job `{}` from snapshot {} done in {} ({})",
            r.kind.as_str(),
            r.job,
            short(id),
            format_secs(secs),
            format_size(r.bytes)
        ),
        (None, _) => println!(
            "{} of job `{}` done in {}",
            r.kind.as_str(),
            r.job,
            format_secs(secs)
        ),
    }
}

/// The first 8 digits of a snapshot id, as restic shows it.
pub(crate) fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(format_secs(7.2), "0:07");
        assert_eq!(format_secs(723.0), "12:03");
        assert_eq!(format_secs(3723.0), "1:02:03");
    }

    #[test]
    fn a_progress_line_has_rate_and_eta_when_the_total_is_known() {
        let mut live = Live::new("db");
        live.phase = "backup".into();
        live.started = Instant::now() - Duration::from_secs(2);
        live.record(Progress {
            done: 4 << 20,
            total: Some(8 << 20),
            bytes: true,
        });
        let line = live.line();
        assert!(
            line.starts_with("db: backup 4 MiB of 8 MiB, 2 MiB/s"),
            "{line}"
        );
        assert!(line.contains("ETA 0:02"), "{line}");
        // Once everything is done there is nothing left to wait for.
        live.record(Progress {
            done: 8 << 20,
            total: Some(8 << 20),
            bytes: true,
        });
        assert!(!live.line().contains("ETA"), "{}", live.line());
        live.record(Progress {
            done: 4 << 20,
            total: Some(8 << 20),
            bytes: true,
        });
        let status = live.status(Some("r1"));
        assert_eq!(status["message_type"], "status");
        assert_eq!(status["bytes_done"], 4 << 20);
        assert_eq!(status["total_bytes"], 8 << 20);
    }
}
