//! A job's timing: its cron schedule in a time zone, what it does about
//! missed fires, its concurrency policy and its retries.
//!
//! Schedules are parsed with `croner` 4 (5 fields, or 6 with seconds first, or
//! `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`), evaluated in the
//! job's IANA `timezone` (default UTC). Across daylight-saving changes a
//! fixed-time schedule fires once per day: a local time that does not exist
//! (spring forward) fires at the first instant after the gap; a local time
//! that happens twice (fall back) fires at its first occurrence only. An
//! interval schedule (`*/15 * * * *`) skips the repeated hour. The daemon's
//! planning over these types is in `daemon::schedule`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::run::RunKind;

/// Aliases accepted in `schedule`, and what they stand for.
const ALIASES: [(&str, &str); 6] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// A job's cron schedule in its time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    expr: String,
    /// Shared by every schedule with the same pattern (see [`intern`]).
    cron: Arc<Cron>,
    tz: Tz,
}

/// The parsed form of `pattern`, shared with every other live schedule of the
/// same pattern: a parsed cron holds a few kilobytes of bit sets (its year
/// field alone covers 5,000 years), and 10,000 jobs often use a few dozen
/// distinct patterns.
fn intern(pattern: &str) -> Result<Arc<Cron>, croner::errors::CronError> {
    static CACHE: Mutex<Option<HashMap<String, Weak<Cron>>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(cron) = cache.get(pattern).and_then(Weak::upgrade) {
        return Ok(cron);
    }
    let cron = Arc::new(
        CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(pattern)?,
    );
    if cache.len() >= 1024 {
        cache.retain(|_, weak| weak.strong_count() > 0);
    }
    cache.insert(pattern.to_owned(), Arc::downgrade(&cron));
    Ok(cron)
}

impl Schedule {
    /// Parse `expr` (5 or 6 fields, or an `@daily`-style alias) to be
    /// evaluated in time zone `timezone` (an IANA name such as
    /// `Europe/Berlin`; `None` means UTC).
    ///
    /// # Errors
    /// A message saying what is wrong with the expression or the zone.
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| ScheduleError::Timezone(name.to_owned()))?,
        };
        let trimmed = expr.trim();
        let pattern = if trimmed.starts_with('@') {
            ALIASES
                .iter()
                .find(|(alias, _)| alias.eq_ignore_ascii_case(trimmed))
                .map(|(_, pattern)| *pattern)
                .ok_or_else(|| {
                    ScheduleError::Cron(
                        expr.to_owned(),
                        "unknown alias; use @hourly, @daily, @weekly, @monthly or @yearly"
                            .to_owned(),
                    )
                })?
        } else {
            let fields = trimmed.split_whitespace().count();
            if !(5..=6).contains(&fields) {
                return Err(ScheduleError::Cron(
                    expr.to_owned(),
                    format!(
                        "has {fields} field{}; expected 5 (minute hour day-of-month month \
                         day-of-week) or 6 (seconds first)",
                        if fields == 1 { "" } else { "s" }
                    ),
                ));
            }
            trimmed
        };
        let cron =
            intern(pattern).map_err(|e| ScheduleError::Cron(expr.to_owned(), e.to_string()))?;
        let schedule = Self {
            expr: expr.to_owned(),
            cron,
            tz,
        };
        // A pattern like `0 0 30 2 *` parses but never fires.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::Cron(
                expr.to_owned(),
                "never fires (no date matches it)".to_owned(),
            ));
        }
        Ok(schedule)
    }

    /// The expression as written.
    #[must_use]
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The time zone it is evaluated in.
    #[must_use]
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first occurrence strictly after `after`, or `None` if there is none
    /// within the search limit (a pattern that never matches).
    #[must_use]
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner works in whole seconds (it would carry a fraction along).
        let mut from = after.trunc_subsecs(0).with_timezone(&self.tz);
        // croner searches in local wall-clock time. Just after a fall-back
        // change it can return the first reading of a repeated local time,
        // which is before `after`: search on from there until past `after`.
        for _ in 0..64 {
            let next = self.cron.find_next_occurrence(&from, false).ok()?;
            let utc = next.with_timezone(&Utc);
            if utc > after {
                return Some(utc);
            }
            from = next;
        }
        None
    }

    /// The last occurrence at or before `at`, if any.
    #[must_use]
    pub fn previous_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = at.trunc_subsecs(0).with_timezone(&self.tz);
        let previous = self.cron.find_previous_occurrence(&local, true).ok()?;
        let utc = previous.with_timezone(&Utc);
        (utc <= at).then_some(utc)
    }
}

/// A bad `schedule` or `timezone`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("`{0}` is not a valid cron schedule: {1}")]
    Cron(String, String),
    /// The time zone is not a known IANA name.
    #[error("unknown time zone `{0}`; use an IANA name such as `Europe/Berlin` or `UTC`")]
    Timezone(String),
}

/// What a job does about fires that passed while the daemon was not running
/// (or was stalled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// Run once for all the missed fires (the default).
    #[default]
    Coalesce,
    /// Do not run for missed fires; wait for the next one.
    Skip,
}

/// What a fire does when the job is still running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Concurrency {
    /// Do not start; record the fire as `skipped` (the default).
    #[default]
    Forbid,
    /// Start another run alongside.
    Allow,
    /// Cancel the running run (recorded `cancelled`), then start.
    Replace,
}

/// What to do with a fire, given the job's policy and whether it is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireAction {
    /// Start a run (exclusive unless the policy is `allow`).
    Run,
    /// Record the fire as skipped.
    Skip,
    /// Cancel the running runs, wait for them, then start.
    ReplaceThenRun,
}

impl Concurrency {
    /// What a fire does when `running` runs of the job are going.
    #[must_use]
    pub fn on_fire(self, running: usize) -> FireAction {
        match (self, running) {
            (_, 0) | (Self::Allow, _) => FireAction::Run,
            (Self::Forbid, _) => FireAction::Skip,
            (Self::Replace, _) => FireAction::ReplaceThenRun,
        }
    }

    /// Whether runs under this policy hold the job exclusively (in the state
    /// store, across processes).
    #[must_use]
    pub fn exclusive(self) -> bool {
        self != Self::Allow
    }

    /// Whether a run of `kind` under this policy must be the only one of its
    /// job queued or running, whoever starts it: backups unless the policy is
    /// `allow`; restores never.
    #[must_use]
    pub fn exclusive_for(self, kind: RunKind) -> bool {
        kind == RunKind::Backup && self.exclusive()
    }
}

/// Retries of a failed run, all under the same fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// Attempts in all, the first included (1 = no retry).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each later one.
    pub backoff: Duration,
    /// Cap on the delay.
    pub max_backoff: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            attempts: 1,
            backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(600),
        }
    }
}

impl Retries {
    /// The delay before attempt `next` (2 for the first retry), with `jitter`
    /// in `[0, 1)`: `backoff × 2^(next-2)` capped at `max_backoff`, of which
    /// the upper half is scaled by `jitter` ("equal jitter": never less than
    /// half the nominal delay, so retries of many jobs spread out).
    #[must_use]
    pub fn delay(&self, next: u32, jitter: f64) -> Duration {
        let doublings = next.saturating_sub(2).min(32);
        let nominal = self
            .backoff
            .saturating_mul(1 << doublings.min(31))
            .min(self.max_backoff);
        let half = nominal / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_of_the_same_pattern_share_their_parsed_form() {
        let a = Schedule::parse("17 4 * * *", None).unwrap();
        let b = Schedule::parse("17 4 * * *", Some("Europe/Berlin")).unwrap();
        let c = Schedule::parse("18 4 * * *", None).unwrap();
        assert!(Arc::ptr_eq(&a.cron, &b.cron));
        assert!(!Arc::ptr_eq(&a.cron, &c.cron));
        assert_ne!(a, b, "the zone still tells them apart");
    }
}
