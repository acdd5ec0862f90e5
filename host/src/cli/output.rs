//! How the command line shows a run: its report, and progress while it goes.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn::capabilities::progress::{Progress, ProgressSink};
use cairn::runner::RunReport;

pub(super) fn print_report(report: &RunReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("report serialises")
        );
        return;
    }
    let r = &report.run;
    let secs = r
        .finished_at_ms
        .map(|f| (f - r.started_at_ms) as f64 / 1000.0)
        .unwrap_or(0.0);
    match &r.error {
        None => {
            println!(
                "run {} of job `{}`: {} in {secs:.1}s",
                r.id,
                r.job,
                r.status.as_str()
            );
            if let Some(id) = &r.snapshot_id {
                println!("snapshot: {id}");
            }
            if let Some(result) = &report.result
                && !result.is_null()
            {
                println!("result: {result}");
            }
        }
        Some(e) => {
            eprintln!(
                "run {} of job `{}`: {} after {secs:.1}s",
                r.id,
                r.job,
                r.status.as_str()
            );
            eprintln!("error: {e}");
            eprintln!("(log: cairn runs show {})", r.id);
        }
    }
}

/// A terminal progress bar, or plain lines at most every 5 seconds.
pub(super) fn progress_sink() -> (ProgressSink, Option<indicatif::ProgressBar>) {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        let sink_bar = bar.clone();
        let sink: ProgressSink = Arc::new(move |job: &str, p: Progress| {
            let template = match (p.bytes, p.total.is_some()) {
                (true, true) => {
                    "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
                }
                (true, false) => "{prefix} {spinner} {bytes} {binary_bytes_per_sec}",
                (false, true) => "{prefix} {wide_bar} {pos}/{len} {per_sec} eta {eta}",
                (false, false) => "{prefix} {spinner} {pos} {per_sec}",
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                sink_bar.set_style(style);
            }
            sink_bar.set_prefix(job.to_string());
            sink_bar.set_length(p.total.unwrap_or(p.done.max(1)));
            sink_bar.set_position(p.done);
        });
        (sink, Some(bar))
    } else {
        let last = Mutex::new(None::<Instant>);
        let sink: ProgressSink = Arc::new(move |job: &str, p: Progress| {
            let mut last = last.lock().unwrap();
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                return;
            }
            *last = Some(Instant::now());
            let unit = if p.bytes { " bytes" } else { "" };
            let total = p.total.map(|t| format!(" of {t}")).unwrap_or_default();
            eprintln!("{job}: {}{total}{unit}", p.done);
        });
        (sink, None)
    }
}
