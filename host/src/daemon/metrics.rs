//! Prometheus metrics of the daemon, rendered in the text exposition format
//! 0.0.4 for `GET /metrics`.
//!
//! Series, all labelled by `job`:
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `cairn_runs_total{job,kind,status}` | counter | runs that ended (or were skipped), by final status |
//! | `cairn_run_duration_seconds{job,kind}` | histogram | wall time of ended runs, 1 s … 6 h buckets |
//! | `cairn_last_success_timestamp_seconds{job}` | gauge | end of the last successful backup (Unix seconds) |
//! | `cairn_backup_bytes{job}` | gauge | bytes of the last successful backup |
//! | `cairn_snapshots{job}` | gauge | snapshots of the job in the repository |
//! | `cairn_job_paused{job}` | gauge | 1 when the job is paused |
//! | `cairn_next_fire_timestamp_seconds{job}` | gauge | next scheduled fire (Unix seconds) |
//! | `cairn_notifications_failed_total{job}` | counter | webhook notifications given up after every attempt |
//!
//! Counters live in memory and restart from zero with the process (Prometheus
//! handles counter resets); [`Metrics::seed`] restores the last-success gauges
//! from the run history so alerts on "no backup for a day" survive restarts.
//! One short-held mutex guards the per-job data; rendering 10,000 jobs takes a
//! few milliseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use super::view::JobView;
use crate::state::{RunKind, RunRecord, RunStatus, StateError, StateStore};

/// Upper bounds (seconds) of the run-duration histogram buckets: 1 s to 6 h.
pub const DURATION_BUCKETS: [f64; 13] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0,
];

/// How many recent runs of a job [`Metrics::seed`] looks through for its last
/// successful backup.
const SEED_SCAN: usize = 200;

/// The daemon's metrics. Cheap to share (`Arc<Metrics>`); every method takes
/// `&self`.
#[derive(Debug, Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<String, JobMetrics>>,
    /// This node's name and labels (`cairn_node_info`): each node of several
    /// serves the metrics of what it ran.
    node: Mutex<Option<(String, String)>>,
}

/// What is known about one job.
#[derive(Debug, Default, Clone)]
struct JobMetrics {
    /// Ended runs by (kind, status).
    runs: BTreeMap<(KindKey, StatusKey), u64>,
    /// Durations of ended runs, by kind.
    durations: BTreeMap<KindKey, Histogram>,
    /// End of the last successful backup, Unix milliseconds.
    last_success_ms: Option<i64>,
    /// Bytes of the last successful backup.
    backup_bytes: Option<u64>,
    /// Snapshots in the repository, as last counted.
    snapshots: Option<u64>,
    /// Notifications given up on.
    notifications_failed: u64,
}

/// [`RunKind`] ordered by name, as a map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct KindKey(&'static str);

/// [`RunStatus`] ordered by name, as a map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct StatusKey(&'static str);

/// A fixed-bucket histogram; counts are per bucket (made cumulative when rendered).
#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations ≤ each bound of [`DURATION_BUCKETS`] and above the previous one.
    buckets: [u64; DURATION_BUCKETS.len()],
    /// Observations above the last bound.
    overflow: u64,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        match DURATION_BUCKETS.iter().position(|bound| value <= *bound) {
            Some(i) => self.buckets[i] += 1,
            None => self.overflow += 1,
        }
        self.sum += value;
        self.count += 1;
    }
}

impl Metrics {
    /// Empty metrics.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Name the node these metrics are of (`cairn_node_info{node, labels}`).
    pub fn set_node(&self, name: &str, labels: &str) {
        *self.node.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((name.to_owned(), labels.to_owned()));
    }

    fn with_jobs<T>(&self, f: impl FnOnce(&mut BTreeMap<String, JobMetrics>) -> T) -> T {
        f(&mut self.jobs.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn with_job<T>(&self, job: &str, f: impl FnOnce(&mut JobMetrics) -> T) -> T {
        self.with_jobs(|jobs| {
            if let Some(metrics) = jobs.get_mut(job) {
                f(metrics)
            } else {
                f(jobs.entry(job.to_owned()).or_default())
            }
        })
    }

    /// Set the last-success gauges of each of `jobs` from the run history: the
    /// most recent successful backup among its last 200 runs. Call once at
    /// start-up, before serving.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn seed<I>(&self, store: &dyn StateStore, jobs: I) -> Result<(), StateError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        for job in jobs {
            let job = job.as_ref();
            let last = store
                .runs(Some(job), SEED_SCAN)?
                .into_iter()
                .find(|r| r.kind == RunKind::Backup && r.status == RunStatus::Succeeded);
            if let Some(run) = last {
                self.with_job(job, |m| {
                    m.last_success_ms = Some(run.finished_at_ms.unwrap_or(run.started_at_ms));
                    m.backup_bytes = Some(run.bytes);
                });
            }
        }
        Ok(())
    }

    /// Count a run that has ended (or was skipped): `cairn_runs_total`, its
    /// duration when it has one, and for a successful backup the last-success
    /// time and bytes. Runs still queued or running are ignored, so calling
    /// this for every state change is harmless.
    pub fn observe_run(&self, run: &RunRecord) {
        if !run.status.is_finished() {
            return;
        }
        let kind = KindKey(run.kind.as_str());
        self.with_job(&run.job, |m| {
            *m.runs
                .entry((kind, StatusKey(run.status.as_str())))
                .or_default() += 1;
            if let Some(finished) = run.finished_at_ms {
                if run.status != RunStatus::Skipped {
                    #[expect(
                        clippy::cast_precision_loss,
                        reason = "durations are far below 2^52 ms"
                    )]
                    let seconds = (finished - run.started_at_ms).max(0) as f64 / 1000.0;
                    m.durations.entry(kind).or_default().observe(seconds);
                }
                if run.kind == RunKind::Backup && run.status == RunStatus::Succeeded {
                    m.last_success_ms = Some(finished);
                    m.backup_bytes = Some(run.bytes);
                }
            }
        });
    }

    /// Set `cairn_snapshots{job}`: the job's snapshot count in the repository
    /// (after a backup or a `forget`).
    pub fn set_snapshots(&self, job: &str, count: u64) {
        self.with_job(job, |m| m.snapshots = Some(count));
    }

    /// Count a webhook notification of `job` given up after every attempt.
    pub fn notification_failed(&self, job: &str) {
        self.with_job(job, |m| m.notifications_failed += 1);
    }

    /// Drop the series of jobs not in `keep` (after a reload removed jobs).
    pub fn retain_jobs(&self, keep: &dyn Fn(&str) -> bool) {
        self.with_jobs(|jobs| jobs.retain(|name, _| keep(name)));
    }

    /// The metrics in the Prometheus text format 0.0.4, with the paused and
    /// next-fire gauges taken from `jobs`.
    #[must_use]
    pub fn render(&self, jobs: &[JobView]) -> String {
        // Copy out under the lock, format outside it: scrapes never hold up runs.
        let snapshot = self.with_jobs(|jobs| jobs.clone());
        let mut out = String::with_capacity(256 + snapshot.len() * 1024 + jobs.len() * 128);
        let node = self
            .node
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((name, labels)) = node {
            family(
                &mut out,
                "cairn_node_info",
                "gauge",
                "The node serving these metrics (the runs counted are the ones it ran or found interrupted).",
            );
            let _ = writeln!(
                out,
                "cairn_node_info{{node=\"{}\",labels=\"{}\"}} 1",
                escape_label(&name),
                escape_label(&labels)
            );
        }
        render_into(&mut out, &snapshot, jobs);
        out
    }
}

fn render_into(out: &mut String, metrics: &BTreeMap<String, JobMetrics>, jobs: &[JobView]) {
    // `write!` to a String cannot fail.
    family(
        out,
        "cairn_runs_total",
        "counter",
        "Runs that ended or were skipped, by job, kind and final status.",
    );
    for (job, m) in metrics {
        let job = escape_label(job);
        for ((kind, status), count) in &m.runs {
            let _ = writeln!(
                out,
                "cairn_runs_total{{job=\"{job}\",kind=\"{}\",status=\"{}\"}} {count}",
                kind.0, status.0
            );
        }
    }

    family(
        out,
        "cairn_run_duration_seconds",
        "histogram",
        "Wall time of ended runs, by job and kind.",
    );
    for (job, m) in metrics {
        let job = escape_label(job);
        for (kind, h) in &m.durations {
            let labels = format!("job=\"{job}\",kind=\"{}\"", kind.0);
            let mut cumulative = 0;
            for (bound, count) in DURATION_BUCKETS.iter().zip(h.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "cairn_run_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "cairn_run_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\n\
                 cairn_run_duration_seconds_sum{{{labels}}} {}\n\
                 cairn_run_duration_seconds_count{{{labels}}} {}",
                h.count, h.sum, h.count
            );
        }
    }

    /// Name, type, help and value of a per-job gauge (or simple counter).
    type Gauge = (
        &'static str,
        &'static str,
        &'static str,
        fn(&JobMetrics) -> Option<String>,
    );
    let gauges: [Gauge; 4] = [
        (
            "cairn_last_success_timestamp_seconds",
            "gauge",
            "End of the job's last successful backup, in seconds since the Unix epoch.",
            |m| m.last_success_ms.map(millis_as_seconds),
        ),
        (
            "cairn_backup_bytes",
            "gauge",
            "Bytes of the job's last successful backup.",
            |m| m.backup_bytes.map(|b| b.to_string()),
        ),
        (
            "cairn_snapshots",
            "gauge",
            "Snapshots of the job in the repository, as counted after its last backup or forget.",
            |m| m.snapshots.map(|n| n.to_string()),
        ),
        (
            "cairn_notifications_failed_total",
            "counter",
            "Webhook notifications of the job given up after every attempt.",
            |m| (m.notifications_failed > 0).then(|| m.notifications_failed.to_string()),
        ),
    ];
    for (name, kind, help, value) in gauges {
        family(out, name, kind, help);
        for (job, m) in metrics {
            if let Some(value) = value(m) {
                let _ = writeln!(out, "{name}{{job=\"{}\"}} {value}", escape_label(job));
            }
        }
    }

    family(
        out,
        "cairn_job_paused",
        "gauge",
        "1 when the job is paused (its schedule does not fire), else 0.",
    );
    for job in jobs {
        let _ = writeln!(
            out,
            "cairn_job_paused{{job=\"{}\"}} {}",
            escape_label(&job.name),
            u8::from(job.paused)
        );
    }
    family(
        out,
        "cairn_next_fire_timestamp_seconds",
        "gauge",
        "Next scheduled fire of the job, in seconds since the Unix epoch.",
    );
    for job in jobs {
        if let Some(next) = job.next_fire {
            let _ = writeln!(
                out,
                "cairn_next_fire_timestamp_seconds{{job=\"{}\"}} {}",
                escape_label(&job.name),
                millis_as_seconds(next)
            );
        }
    }
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `1700000000123` → `1700000000.123` (exact: no float rounding).
fn millis_as_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    match ms % 1000 {
        0 => format!("{sign}{}", ms / 1000),
        frac => {
            let frac = format!("{frac:03}");
            format!("{sign}{}.{}", ms / 1000, frac.trim_end_matches('0'))
        }
    }
}

/// A label value escaped for the text format: `\` → `\\`, `"` → `\"`,
/// newline → `\n`.
#[must_use]
pub fn escape_label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.into()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::state::RunOutcome;
    use crate::state::sqlite::SqliteStore;

    /// One parsed sample line.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Sample {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    /// A strict reader of the text exposition format, enough to catch what
    /// Prometheus would reject: every sample belongs to a family declared by a
    /// preceding `# TYPE` (one `# HELP` and one `# TYPE` per family, before its
    /// samples), label values are properly quoted and escaped, values parse,
    /// no series repeats, and every histogram has cumulative buckets ending in
    /// `+Inf` equal to its `_count`.
    pub(crate) fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helps: HashMap<String, ()> = HashMap::new();
        let mut samples = Vec::new();
        let mut seen = std::collections::HashSet::new();
        if !text.is_empty() && !text.ends_with('\n') {
            return Err("the text must end with a newline".into());
        }
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                if helps.insert(name.to_owned(), ()).is_some() {
                    return Err(format!("line {n}: second HELP for {name}"));
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!("line {n}: malformed TYPE line `{line}`"));
                };
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                    return Err(format!("line {n}: unknown type `{kind}`"));
                }
                if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(format!("line {n}: second TYPE for {name}"));
                }
                if samples
                    .iter()
                    .any(|s: &Sample| family_of(&s.name, &types) == name)
                {
                    return Err(format!("line {n}: TYPE for {name} after its samples"));
                }
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let sample = parse_sample(line).map_err(|e| format!("line {n}: {e}: `{line}`"))?;
            let family = family_of(&sample.name, &types);
            let Some(kind) = types.get(family) else {
                return Err(format!(
                    "line {n}: sample {} has no preceding TYPE",
                    sample.name
                ));
            };
            let suffix = &sample.name[family.len()..];
            let allowed: &[&str] = match kind.as_str() {
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            if !allowed.contains(&suffix) {
                return Err(format!("line {n}: {} does not fit a {kind}", sample.name));
            }
            if !seen.insert(format!("{}{:?}", sample.name, sample.labels)) {
                return Err(format!("line {n}: duplicate series"));
            }
            samples.push(sample);
        }
        check_histograms(&samples, &types)?;
        Ok(samples)
    }

    /// The declared family a sample name belongs to (`x_bucket` → `x` for a histogram).
    fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
        if types.contains_key(name) {
            return name;
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if types.get(base).is_some_and(|t| t == "histogram") {
                    return base;
                }
            }
        }
        name
    }

    fn parse_sample(line: &str) -> Result<Sample, String> {
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .ok_or("no value")?;
        let name = &line[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err("bad metric name".into());
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            let mut key = String::new();
            loop {
                let Some((i, c)) = chars.next() else {
                    return Err("unterminated labels".into());
                };
                match c {
                    '}' if key.is_empty() => {
                        rest = &inner[i + 1..];
                        break;
                    }
                    ',' if key.is_empty() => {}
                    '=' => {
                        if chars.next().map(|(_, c)| c) != Some('"') {
                            return Err("label value not quoted".into());
                        }
                        let mut value = String::new();
                        loop {
                            match chars.next().map(|(_, c)| c) {
                                Some('"') => break,
                                Some('\\') => match chars.next().map(|(_, c)| c) {
                                    Some('\\') => value.push('\\'),
                                    Some('"') => value.push('"'),
                                    Some('n') => value.push('\n'),
                                    other => return Err(format!("bad escape {other:?}")),
                                },
                                Some('\n') | None => return Err("unterminated label value".into()),
                                Some(c) => value.push(c),
                            }
                        }
                        if labels.insert(std::mem::take(&mut key), value).is_some() {
                            return Err("repeated label".into());
                        }
                    }
                    c if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                    c => return Err(format!("unexpected `{c}` in labels")),
                }
            }
        }
        let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value `{v}`"))?,
        };
        Ok(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    }

    fn check_histograms(samples: &[Sample], types: &HashMap<String, String>) -> Result<(), String> {
        for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
            // Group bucket samples by their labels without `le`.
            let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            let mut counts: BTreeMap<String, f64> = BTreeMap::new();
            for s in samples {
                let mut labels = s.labels.clone();
                if s.name == format!("{family}_bucket") {
                    let le = labels.remove("le").ok_or("bucket without le")?;
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().map_err(|_| format!("bad le `{le}`"))?
                    };
                    series
                        .entry(format!("{labels:?}"))
                        .or_default()
                        .push((le, s.value));
                } else if s.name == format!("{family}_count") {
                    counts.insert(format!("{labels:?}"), s.value);
                }
            }
            for (labels, buckets) in &series {
                if !buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
                {
                    return Err(format!(
                        "{family}{labels}: buckets not cumulative: {buckets:?}"
                    ));
                }
                let last = buckets.last().copied().unwrap_or_default();
                if last.0 != f64::INFINITY {
                    return Err(format!("{family}{labels}: no +Inf bucket"));
                }
                if counts.get(labels) != Some(&last.1) {
                    return Err(format!("{family}{labels}: +Inf bucket is not the count"));
                }
            }
        }
        Ok(())
    }

    fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
        samples.iter().find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
    }

    /// A run of `job` that ended with `status` after `seconds` (built from a
    /// store's record, so it has every field).
    fn record(job: &str, kind: RunKind, status: RunStatus, seconds: i64, bytes: u64) -> RunRecord {
        let mut run = SqliteStore::open_in_memory()
            .and_then(|store| store.start_run(job, kind))
            .unwrap_or_else(|err| panic!("in-memory store: {err}"));
        run.status = status;
        run.started_at_ms = 1_700_000_000_000;
        run.finished_at_ms = Some(1_700_000_000_000 + seconds * 1000);
        run.bytes = bytes;
        run
    }

    fn view(name: &str, paused: bool, next_fire: Option<i64>) -> JobView {
        JobView {
            name: name.to_owned(),
            task: "builtin:directory".to_owned(),
            schedule: Some("@daily".to_owned()),
            timezone: None,
            next_fire,
            paused,
            last_run: None,
        }
    }

    #[test]
    fn runs_are_counted_and_timed_in_cumulative_buckets() -> anyhow::Result<()> {
        let metrics = Metrics::new();
        for (status, seconds) in [
            (RunStatus::Succeeded, 3),
            (RunStatus::Succeeded, 100),
            (RunStatus::Failed, 7200),
            (RunStatus::Succeeded, 30_000),
        ] {
            metrics.observe_run(&record("db", RunKind::Backup, status, seconds, 42));
        }
        let mut running = record("db", RunKind::Backup, RunStatus::Running, 0, 0);
        running.finished_at_ms = None;
        metrics.observe_run(&running);

        let text = metrics.render(&[view("db", false, None)]);
        let samples = parse_exposition(&text).map_err(anyhow::Error::msg)?;
        let total = |status| {
            find(
                &samples,
                "cairn_runs_total",
                &[("job", "db"), ("kind", "backup"), ("status", status)],
            )
            .map(|s| s.value)
        };
        assert_eq!(total("succeeded"), Some(3.0));
        assert_eq!(total("failed"), Some(1.0));
        assert_eq!(total("running"), None, "unfinished runs are not counted");

        let bucket = |le| {
            find(
                &samples,
                "cairn_run_duration_seconds_bucket",
                &[("job", "db"), ("kind", "backup"), ("le", le)],
            )
            .map(|s| s.value)
        };
        assert_eq!(bucket("1"), Some(0.0));
        assert_eq!(bucket("5"), Some(1.0));
        assert_eq!(bucket("120"), Some(2.0));
        assert_eq!(bucket("7200"), Some(3.0));
        assert_eq!(
            bucket("21600"),
            Some(3.0),
            "30000 s is above the last bound"
        );
        assert_eq!(bucket("+Inf"), Some(4.0));
        let sum = find(
            &samples,
            "cairn_run_duration_seconds_sum",
            &[("job", "db"), ("kind", "backup")],
        );
        assert_eq!(sum.map(|s| s.value), Some(37_303.0));
        Ok(())
    }

    #[test]
    fn gauges_show_last_success_bytes_snapshots_paused_and_next_fire() -> anyhow::Result<()> {
        let metrics = Metrics::new();
        metrics.observe_run(&record(
            "db",
            RunKind::Backup,
            RunStatus::Succeeded,
            2,
            1234,
        ));
        metrics.observe_run(&record("db", RunKind::Backup, RunStatus::Failed, 9, 99));
        metrics.observe_run(&record("db", RunKind::Restore, RunStatus::Succeeded, 9, 77));
        metrics.set_snapshots("db", 5);
        metrics.notification_failed("db");
        let text = metrics.render(&[
            view("db", true, Some(1_700_000_100_250)),
            view("idle", false, None),
        ]);
        let samples = parse_exposition(&text).map_err(anyhow::Error::msg)?;
        let value = |name, job| find(&samples, name, &[("job", job)]).map(|s| s.value);
        assert_eq!(
            value("cairn_last_success_timestamp_seconds", "db"),
            Some(1_700_000_002.0),
            "a failed backup or a restore does not move the last success"
        );
        assert_eq!(value("cairn_backup_bytes", "db"), Some(1234.0));
        assert_eq!(value("cairn_snapshots", "db"), Some(5.0));
        assert_eq!(value("cairn_notifications_failed_total", "db"), Some(1.0));
        assert_eq!(value("cairn_job_paused", "db"), Some(1.0));
        assert_eq!(value("cairn_job_paused", "idle"), Some(0.0));
        assert!(text.contains("cairn_next_fire_timestamp_seconds{job=\"db\"} 1700000100.25\n"));
        assert_eq!(value("cairn_next_fire_timestamp_seconds", "idle"), None);
        assert_eq!(value("cairn_last_success_timestamp_seconds", "idle"), None);
        Ok(())
    }

    #[test]
    fn label_values_are_escaped() -> anyhow::Result<()> {
        let metrics = Metrics::new();
        let odd = "we\"ird\\job\nname";
        metrics.set_snapshots(odd, 1);
        let text = metrics.render(&[view(odd, false, None)]);
        assert!(
            text.contains(r#"cairn_snapshots{job="we\"ird\\job\nname"} 1"#),
            "{text}"
        );
        let samples = parse_exposition(&text).map_err(anyhow::Error::msg)?;
        assert_eq!(
            find(&samples, "cairn_job_paused", &[("job", odd)]).map(|s| s.value),
            Some(0.0)
        );
        Ok(())
    }

    #[test]
    fn the_checker_rejects_what_prometheus_would() {
        let bad = [
            "x 1\n",
            "# TYPE x gauge\nx{job=\"a} 1\n",
            "# TYPE x gauge\nx{job=\"a\\q\"} 1\n",
            "# TYPE x gauge\nx one\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n",
            "# TYPE x gauge\nx 1\nx 2\n",
        ];
        for text in bad {
            assert!(parse_exposition(text).is_err(), "accepted: {text}");
        }
        assert!(parse_exposition("# HELP x X.\n# TYPE x gauge\nx{a=\"\\\"\"} 1.5\n").is_ok());
    }

    #[test]
    fn seed_restores_last_success_from_history() -> anyhow::Result<()> {
        let store = SqliteStore::open_in_memory()?;
        let ok = store.start_run("db", RunKind::Backup)?;
        store.finish_run(
            &ok.id,
            &RunOutcome {
                status: RunStatus::Succeeded,
                error: None,
                snapshot_id: Some("abc".into()),
                bytes: 4096,
                result: None,
            },
        )?;
        let failed = store.start_run("db", RunKind::Backup)?;
        store.finish_run(
            &failed.id,
            &RunOutcome {
                status: RunStatus::Failed,
                error: Some("boom".into()),
                snapshot_id: None,
                bytes: 1,
                result: None,
            },
        )?;
        let finished = store.run(&ok.id)?.finished_at_ms.unwrap_or_default();

        let metrics = Metrics::new();
        metrics.seed(&store, ["db", "never-ran"])?;
        let samples = parse_exposition(&metrics.render(&[])).map_err(anyhow::Error::msg)?;
        let value = |name, job| find(&samples, name, &[("job", job)]).map(|s| s.value);
        assert_eq!(value("cairn_backup_bytes", "db"), Some(4096.0));
        #[expect(clippy::cast_precision_loss, reason = "test timestamps")]
        let expected = finished as f64 / 1000.0;
        assert_eq!(
            value("cairn_last_success_timestamp_seconds", "db"),
            Some(expected)
        );
        assert_eq!(value("cairn_backup_bytes", "never-ran"), None);
        assert!(
            find(
                &samples,
                "cairn_runs_total",
                &[("job", "db"), ("kind", "backup"), ("status", "succeeded")]
            )
            .is_none(),
            "counters start at zero"
        );
        Ok(())
    }

    #[test]
    fn retain_jobs_drops_removed_jobs() {
        let metrics = Metrics::new();
        metrics.set_snapshots("kept", 1);
        metrics.set_snapshots("gone", 1);
        metrics.retain_jobs(&|job| job == "kept");
        let text = metrics.render(&[]);
        assert!(text.contains("job=\"kept\""));
        assert!(!text.contains("job=\"gone\""));
    }

    #[test]
    fn rendering_ten_thousand_jobs_is_fast() -> anyhow::Result<()> {
        let metrics = Metrics::new();
        let mut views = Vec::new();
        for i in 0..10_000 {
            let job = format!("job-{i:05}");
            metrics.observe_run(&record(
                &job,
                RunKind::Backup,
                RunStatus::Succeeded,
                60,
                1 << 20,
            ));
            metrics.set_snapshots(&job, 7);
            views.push(view(&job, i % 2 == 0, Some(1_700_000_000_000 + i)));
        }
        let start = std::time::Instant::now();
        let text = metrics.render(&views);
        let elapsed = start.elapsed();
        eprintln!("rendered 10,000 jobs ({} bytes) in {elapsed:?}", text.len());
        let samples = parse_exposition(&text).map_err(anyhow::Error::msg)?;
        // Per job: 1 counter, 16 histogram lines, 3 gauges, paused, next fire.
        assert_eq!(samples.len(), 10_000 * 22);
        // Generous bound for debug builds on a loaded 2-core machine; a
        // release build takes a few milliseconds.
        assert!(
            elapsed < std::time::Duration::from_secs(2),
            "took {elapsed:?}"
        );
        Ok(())
    }
}
