//! Pure scheduling logic of the daemon: cron schedules in a time zone, what a
//! job does about fires it missed, its concurrency policy and retry backoff,
//! and the timer queue of next fires. Nothing here reads the clock: every
//! function takes `now`, so tests drive time (see [`Clock`]).
//!
//! Schedules are parsed with `croner` 4 (5 fields, or 6 with seconds first, or
//! `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`), evaluated in the
//! job's IANA `timezone` (default UTC). Across daylight-saving changes a
//! fixed-time schedule fires once per day: a local time that does not exist
//! (spring forward) fires at the first instant after the gap; a local time
//! that happens twice (fall back) fires at its first occurrence only. An
//! interval schedule (`*/15 * * * *`) skips the repeated hour.
//!
//! Next fires are computed from the previous *scheduled* time, never from
//! when a run happened to start, and are kept in UTC.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use chrono::{DateTime, SubsecRound as _, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Where the current time comes from. The daemon uses [`SystemClock`]; tests
/// pass their own times to the pure functions of this module instead.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Aliases accepted in `schedule`, and what they stand for.
const ALIASES: [(&str, &str); 6] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// How far in the past an occurrence may be and still count as on time (the
/// daemon woke up a little late) rather than missed.
pub const ON_TIME: Duration = Duration::from_secs(30);

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
    pub fn exclusive_for(self, kind: crate::state::RunKind) -> bool {
        kind == crate::state::RunKind::Backup && self.exclusive()
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

/// What to do at `now` about a job whose earliest unhandled occurrence is
/// `pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Fire now for this schedule time, if anything is due.
    pub fire: Option<DateTime<Utc>>,
    /// How many due occurrences this plan covers without running them
    /// (coalesced or skipped).
    pub dropped: u32,
    /// The latest occurrence handled now (fired or not), if any: the
    /// "last scheduled" mark to keep for the next start-up.
    pub handled: Option<DateTime<Utc>>,
    /// The next occurrence after the ones handled now.
    pub next: Option<DateTime<Utc>>,
}

/// The first occurrence to wait for at start-up: after the last fired one
/// when the store has it (so fires missed while down are found), else after
/// `now`.
#[must_use]
pub fn first_pending(
    schedule: &Schedule,
    last_scheduled: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    schedule.next_after(last_scheduled.unwrap_or(now))
}

/// Plan what to do at `now` for a job whose earliest unhandled occurrence is
/// `pending`. Every occurrence up to `now` is handled: the latest one fires
/// when it is on time (within [`ON_TIME`]); older ones, or a late latest one,
/// were missed: `coalesce` fires once for them (for the latest), `skip` fires
/// nothing.
#[must_use]
pub fn plan(
    schedule: &Schedule,
    pending: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    missed: Missed,
) -> Plan {
    let Some(first) = pending.filter(|p| *p <= now) else {
        return Plan {
            fire: None,
            dropped: 0,
            handled: None,
            next: pending,
        };
    };
    // Walk to the latest occurrence at or before `now`; a long downtime of a
    // very frequent schedule jumps there directly.
    let mut latest = first;
    let mut covered = 1_u32;
    for _ in 0..10_000 {
        match schedule.next_after(latest) {
            Some(n) if n <= now => {
                latest = n;
                covered += 1;
            }
            _ => break,
        }
    }
    if let Some(p) = schedule.previous_at_or_before(now)
        && p > latest
    {
        latest = p;
        covered = covered.saturating_add(1);
    }
    let on_time = (now - latest).to_std().unwrap_or_default() <= ON_TIME;
    let fire = (on_time || missed == Missed::Coalesce).then_some(latest);
    Plan {
        fire,
        dropped: covered - u32::from(fire.is_some()),
        handled: Some(latest),
        next: schedule.next_after(latest.max(now)),
    }
}

/// The next fires of all jobs, earliest first: one sorted set, so the daemon
/// needs one timer whatever the number of jobs.
#[derive(Debug, Default)]
pub struct Timer {
    queue: BTreeSet<(DateTime<Utc>, String)>,
    next: HashMap<String, DateTime<Utc>>,
}

impl Timer {
    /// Set (or clear, with `None`) the next fire of `job`.
    pub fn set(&mut self, job: &str, at: Option<DateTime<Utc>>) {
        if let Some(old) = self.next.remove(job) {
            self.queue.remove(&(old, job.to_owned()));
        }
        if let Some(at) = at {
            self.queue.insert((at, job.to_owned()));
            self.next.insert(job.to_owned(), at);
        }
    }

    /// The next fire of `job`, if it has one.
    #[must_use]
    pub fn next_of(&self, job: &str) -> Option<DateTime<Utc>> {
        self.next.get(job).copied()
    }

    /// The earliest next fire of any job.
    #[must_use]
    pub fn earliest(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Remove and return every job whose next fire is at or before `now`,
    /// with that fire time, earliest first.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            let (at, job) = self.queue.pop_first().expect("checked above");
            self.next.remove(&job);
            due.push((job, at));
        }
        due
    }

    /// How many jobs have a next fire.
    #[must_use]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no job has a next fire.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// `ms` (milliseconds since the Unix epoch) as a time.
#[must_use]
pub fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration as Span, NaiveDate, Timelike as _};

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn berlin_daily() -> Schedule {
        Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap()
    }

    /// Drive a job through `[from, to)` minute by minute, firing as the daemon
    /// does (plan at each tick); return the fire times.
    fn simulate(
        schedule: &Schedule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: Span,
    ) -> Vec<DateTime<Utc>> {
        let mut pending = first_pending(schedule, None, from);
        let mut fires = Vec::new();
        let mut now = from;
        while now < to {
            let p = plan(schedule, pending, now, Missed::Coalesce);
            fires.extend(p.fire);
            pending = p.next;
            now += step;
        }
        fires
    }

    #[test]
    fn spring_forward_fires_once_after_the_gap() {
        // 2026-03-29 02:30 does not exist in Berlin (02:00 CET → 03:00 CEST).
        let s = berlin_daily();
        let fires = simulate(
            &s,
            utc("2026-03-27T12:00:00Z"),
            utc("2026-03-31T12:00:00Z"),
            Span::minutes(1),
        );
        assert_eq!(
            fires,
            [
                utc("2026-03-28T01:30:00Z"), // 02:30 CET
                utc("2026-03-29T01:00:00Z"), // 03:00 CEST, first instant after the gap
                utc("2026-03-30T00:30:00Z"), // 02:30 CEST
                utc("2026-03-31T00:30:00Z"),
            ]
        );
    }

    #[test]
    fn fall_back_fires_once_on_the_repeated_time() {
        // 2026-10-25 02:30 happens twice in Berlin (03:00 CEST → 02:00 CET).
        let s = berlin_daily();
        let fires = simulate(
            &s,
            utc("2026-10-23T12:00:00Z"),
            utc("2026-10-27T12:00:00Z"),
            Span::minutes(1),
        );
        assert_eq!(
            fires,
            [
                utc("2026-10-24T00:30:00Z"), // 02:30 CEST
                utc("2026-10-25T00:30:00Z"), // first 02:30 (CEST) only
                utc("2026-10-26T01:30:00Z"), // 02:30 CET
                utc("2026-10-27T01:30:00Z"),
            ]
        );
        // Each local day has exactly one fire.
        let days: Vec<NaiveDate> = fires
            .iter()
            .map(|f| f.with_timezone(&s.timezone()).date_naive())
            .collect();
        let mut unique = days.clone();
        unique.dedup();
        assert_eq!(days, unique);
    }

    #[test]
    fn next_after_a_restart_inside_the_repeated_hour_is_tomorrow() {
        // Restarted at 02:40 CET, after the first 02:30 (CEST) already fired.
        let s = berlin_daily();
        let next = s.next_after(utc("2026-10-25T01:40:00Z")).unwrap();
        assert_eq!(next, utc("2026-10-26T01:30:00Z"));
        // Started between the two 02:30s: the next is tomorrow, never in the past.
        let next = s.next_after(utc("2026-10-25T00:45:00Z")).unwrap();
        assert_eq!(next, utc("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn interval_schedules_skip_nothing_in_the_gap_and_never_go_back() {
        let s = Schedule::parse("*/30 * * * *", Some("Europe/Berlin")).unwrap();
        let fires = simulate(
            &s,
            utc("2026-10-24T23:50:00Z"),
            utc("2026-10-25T02:10:00Z"),
            Span::minutes(1),
        );
        assert!(fires.windows(2).all(|w| w[0] < w[1]), "{fires:?}");
        assert_eq!(fires.first(), Some(&utc("2026-10-25T00:00:00Z")));
        assert!(fires.iter().all(|f| f.minute() % 30 == 0));
    }

    #[test]
    fn six_fields_have_seconds_and_aliases_work() {
        let s = Schedule::parse("*/2 * * * * *", None).unwrap();
        assert_eq!(
            s.next_after(utc("2026-01-01T00:00:01Z")),
            Some(utc("2026-01-01T00:00:02Z"))
        );
        let daily = Schedule::parse("@daily", None).unwrap();
        assert_eq!(
            daily.next_after(utc("2026-01-01T10:00:00Z")),
            Some(utc("2026-01-02T00:00:00Z"))
        );
        let weekly = Schedule::parse("@WEEKLY", Some("America/New_York")).unwrap();
        // Sunday 2026-01-04 00:00 in New York is 05:00 UTC.
        assert_eq!(
            weekly.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-04T05:00:00Z"))
        );
        for alias in ["@hourly", "@monthly", "@yearly", "@annually"] {
            Schedule::parse(alias, None).unwrap();
        }
    }

    #[test]
    fn bad_schedules_and_zones_say_what_is_wrong() {
        let err = |e: &str, tz: Option<&str>| Schedule::parse(e, tz).unwrap_err().to_string();
        assert!(err("61 * * * *", None).contains("`61 * * * *` is not a valid cron schedule"));
        assert!(err("* * *", None).contains("has 3 fields; expected 5"));
        assert!(err("0 0 1 1 * 2030 x", None).contains("has 7 fields"));
        assert!(err("@reboot", None).contains("unknown alias"));
        assert!(err("0 0 30 2 *", None).contains("never fires"));
        assert!(err("", None).contains("has 0 fields"));
        assert!(err("@daily", Some("Mars/Olympus")).contains("unknown time zone `Mars/Olympus`"));
    }

    #[test]
    fn missed_fires_coalesce_into_one_run() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        // Last fired at 10:00, down until 13:20: 11:00, 12:00 and 13:00 were missed.
        let now = utc("2026-05-01T13:20:00Z");
        let pending = first_pending(&s, Some(utc("2026-05-01T10:00:00Z")), now);
        assert_eq!(pending, Some(utc("2026-05-01T11:00:00Z")));
        let p = plan(&s, pending, now, Missed::Coalesce);
        assert_eq!(p.fire, Some(utc("2026-05-01T13:00:00Z")));
        assert_eq!(p.dropped, 2);
        assert_eq!(p.next, Some(utc("2026-05-01T14:00:00Z")));
    }

    #[test]
    fn missed_fires_are_skipped_under_skip() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        let now = utc("2026-05-01T13:20:00Z");
        let pending = first_pending(&s, Some(utc("2026-05-01T10:00:00Z")), now);
        let p = plan(&s, pending, now, Missed::Skip);
        assert_eq!(p.fire, None);
        assert_eq!(p.dropped, 3);
        assert_eq!(p.next, Some(utc("2026-05-01T14:00:00Z")));
    }

    #[test]
    fn an_on_time_fire_runs_under_both_policies() {
        let s = Schedule::parse("0 * * * *", None).unwrap();
        let now = utc("2026-05-01T13:00:00.400Z");
        for missed in [Missed::Coalesce, Missed::Skip] {
            let p = plan(&s, Some(utc("2026-05-01T13:00:00Z")), now, missed);
            assert_eq!(p.fire, Some(utc("2026-05-01T13:00:00Z")), "{missed:?}");
            assert_eq!(p.dropped, 0);
            assert_eq!(p.next, Some(utc("2026-05-01T14:00:00Z")));
        }
        // Nothing due yet: nothing fires, the pending time stays.
        let early = plan(&s, Some(utc("2026-05-01T14:00:00Z")), now, Missed::Skip);
        assert_eq!(early.fire, None);
        assert_eq!(early.next, Some(utc("2026-05-01T14:00:00Z")));
    }

    #[test]
    fn first_start_waits_for_the_next_occurrence() {
        let s = Schedule::parse("0 3 * * *", None).unwrap();
        let now = utc("2026-05-01T13:20:00Z");
        let pending = first_pending(&s, None, now);
        assert_eq!(pending, Some(utc("2026-05-02T03:00:00Z")));
        assert_eq!(plan(&s, pending, now, Missed::Coalesce).fire, None);
    }

    #[test]
    fn long_downtime_of_a_frequent_schedule_is_planned_quickly() {
        let s = Schedule::parse("* * * * * *", None).unwrap();
        let last = utc("2026-05-01T00:00:00Z");
        let now = utc("2026-05-03T00:00:00Z");
        let started = std::time::Instant::now();
        let p = plan(
            &s,
            first_pending(&s, Some(last), now),
            now,
            Missed::Coalesce,
        );
        assert_eq!(p.fire, Some(now));
        assert_eq!(p.next, Some(now + Span::seconds(1)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn concurrency_policies_decide_fires_of_a_running_job() {
        assert_eq!(Concurrency::Forbid.on_fire(0), FireAction::Run);
        assert_eq!(Concurrency::Forbid.on_fire(1), FireAction::Skip);
        assert_eq!(Concurrency::Allow.on_fire(3), FireAction::Run);
        assert_eq!(Concurrency::Replace.on_fire(0), FireAction::Run);
        assert_eq!(Concurrency::Replace.on_fire(1), FireAction::ReplaceThenRun);
        assert!(Concurrency::Forbid.exclusive());
        assert!(Concurrency::Replace.exclusive());
        assert!(!Concurrency::Allow.exclusive());
        use crate::state::RunKind;
        assert!(Concurrency::Forbid.exclusive_for(RunKind::Backup));
        assert!(!Concurrency::Forbid.exclusive_for(RunKind::Restore));
        assert!(!Concurrency::Allow.exclusive_for(RunKind::Backup));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let r = Retries {
            attempts: 5,
            backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(100),
        };
        assert_eq!(r.delay(2, 0.0), Duration::from_secs(15));
        assert_eq!(
            r.delay(2, 0.999_999),
            Duration::from_secs(30) - Duration::from_micros(15)
        );
        assert_eq!(r.delay(3, 0.5), Duration::from_secs(45));
        // 120s nominal is capped at 100s.
        assert_eq!(r.delay(4, 1.0), Duration::from_secs(100));
        assert_eq!(r.delay(40, 1.0), Duration::from_secs(100));
        for i in 0..100 {
            let d = r.delay(3, f64::from(i) / 100.0);
            assert!(d >= Duration::from_secs(30) && d <= Duration::from_secs(60));
        }
    }

    #[test]
    fn schedules_of_the_same_pattern_share_their_parsed_form() {
        let a = Schedule::parse("17 4 * * *", None).unwrap();
        let b = Schedule::parse("17 4 * * *", Some("Europe/Berlin")).unwrap();
        let c = Schedule::parse("18 4 * * *", None).unwrap();
        assert!(Arc::ptr_eq(&a.cron, &b.cron));
        assert!(!Arc::ptr_eq(&a.cron, &c.cron));
        assert_ne!(a, b, "the zone still tells them apart");
    }

    #[test]
    fn timer_pops_due_jobs_in_order() {
        let mut t = Timer::default();
        t.set("b", Some(utc("2026-01-01T00:00:02Z")));
        t.set("a", Some(utc("2026-01-01T00:00:01Z")));
        t.set("c", Some(utc("2026-01-01T00:00:09Z")));
        t.set("a", Some(utc("2026-01-01T00:00:03Z")));
        t.set("gone", Some(utc("2026-01-01T00:00:00Z")));
        t.set("gone", None);
        assert_eq!(t.len(), 3);
        assert_eq!(t.earliest(), Some(utc("2026-01-01T00:00:02Z")));
        let due = t.pop_due(utc("2026-01-01T00:00:05Z"));
        assert_eq!(
            due,
            [
                ("b".to_owned(), utc("2026-01-01T00:00:02Z")),
                ("a".to_owned(), utc("2026-01-01T00:00:03Z"))
            ]
        );
        assert_eq!(t.next_of("a"), None);
        assert_eq!(t.next_of("c"), Some(utc("2026-01-01T00:00:09Z")));
        assert!(t.pop_due(utc("2026-01-01T00:00:08Z")).is_empty());
    }
}
