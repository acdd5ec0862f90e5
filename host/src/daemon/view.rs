//! What the daemon shows of itself: jobs and times as the API, the metrics
//! and the notifications present them. Shared by [`super::api`] and
//! [`super::metrics`], which do not import each other.

use serde::Serialize;

use crate::state::RunRecord;

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    /// Job name.
    pub name: String,
    /// The task, as configured (`builtin:postgres`, a path, `pipeline:NAME`).
    pub task: String,
    /// Cron schedule, if the job has one.
    pub schedule: Option<String>,
    /// IANA time zone of the schedule (`None`: UTC).
    pub timezone: Option<String>,
    /// Next scheduled fire, milliseconds since the Unix epoch (UTC); shown as
    /// RFC 3339 UTC with milliseconds (`2025-03-30T01:00:00.000Z`).
    #[serde(serialize_with = "serialize_rfc3339")]
    pub next_fire: Option<i64>,
    /// Whether the schedule is paused.
    pub paused: bool,
    /// The job's most recent run.
    pub last_run: Option<RunRecord>,
}

/// `1743296400000` → `2025-03-30T01:00:00.000Z`.
#[must_use]
pub fn rfc3339_millis(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(
        |_| format!("{ms} ms since the epoch (out of range)"),
        |t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    )
}

#[expect(clippy::ref_option, reason = "serde's serialize_with passes &Option")]
fn serialize_rfc3339<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&rfc3339_millis(*ms)),
        None => s.serialize_none(),
    }
}
