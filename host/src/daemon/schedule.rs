//! Pure scheduling logic of the daemon: which fires are due, what a job does
//! about fires it missed, and the timer queue of next fires. The schedule,
//! concurrency and retry types are vocabulary ([`crate::model::schedule`]).
//! Nothing here reads the clock: every function takes `now`, so tests drive
//! time (see [`Clock`]).
//!
//! Next fires are computed from the previous *scheduled* time, never from
//! when a run happened to start, and are kept in UTC.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};

pub use crate::model::schedule::{
    Concurrency, FireAction, Missed, Retries, Schedule, ScheduleError,
};

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

/// How far in the past an occurrence may be and still count as on time (the
/// daemon woke up a little late) rather than missed.
pub const ON_TIME: Duration = Duration::from_secs(30);

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
