//! Keep rules (restic's `--keep-*`), evaluated by rustic's forget algorithm.

use rustic_core::{KeepOptions, repofile::SnapshotFile};

use super::{RepoError, failed};

pub use crate::model::repository::Retention;

/// rustic's keep options for `keep`.
fn keep_options(keep: &Retention) -> KeepOptions {
    let n = |v: Option<u32>| v.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
    let mut k = KeepOptions::default();
    k.keep_last = n(keep.keep_last);
    k.keep_hourly = n(keep.keep_hourly);
    k.keep_daily = n(keep.keep_daily);
    k.keep_weekly = n(keep.keep_weekly);
    k.keep_monthly = n(keep.keep_monthly);
    k.keep_yearly = n(keep.keep_yearly);
    k
}

const REASONS: [&str; 6] = ["last", "hourly", "daily", "weekly", "monthly", "yearly"];

/// Indices (into `snaps`) kept by `keep`, with rustic's reasons.
fn evaluate(
    snaps: Vec<SnapshotFile>,
    keep: &Retention,
) -> Result<Vec<(usize, Vec<&'static str>)>, RepoError> {
    if keep.is_empty() {
        return Ok((0..snaps.len())
            .map(|i| (i, vec!["no retention"]))
            .collect());
    }
    let now = jiff::Zoned::now();
    let applied = keep_options(keep)
        .apply(snaps, &now)
        .map_err(failed("applying keep rules"))?;
    let mut kept: Vec<(usize, Vec<&'static str>)> = applied
        .into_iter()
        .filter(|f| f.keep)
        .map(|f| {
            let index = f.snapshot.label.parse::<usize>().unwrap_or(usize::MAX);
            let reasons = f
                .reasons
                .iter()
                .filter_map(|r| REASONS.iter().find(|k| **k == r.as_str()).copied())
                .collect();
            (index, reasons)
        })
        .collect();
    kept.sort_by_key(|(i, _)| *i);
    Ok(kept)
}

/// Indices of `snaps` kept by `keep` (used by `forget`, in the snapshots' own time zones).
pub(super) fn keep_indices(
    snaps: &[SnapshotFile],
    keep: &Retention,
) -> Result<Vec<usize>, RepoError> {
    let labelled = snaps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            s.label = i.to_string();
            s
        })
        .collect();
    Ok(evaluate(labelled, keep)?
        .into_iter()
        .map(|(i, _)| i)
        .collect())
}

/// Pure keep-rule evaluation: which of `times` (any order) `keep` retains and why
/// (`"last"`, `"hourly"`, …, or `"no retention"` when `keep` is empty), sorted by index.
///
/// Uses rustic's forget algorithm (restic semantics, with one rustic addition:
/// the oldest snapshot opens a period of its own, so it is kept while a rule still
/// has count left). Times are bucketed in UTC here; `forget` buckets each snapshot
/// in the time zone it was taken in. Does not apply `forget`'s "newest is always
/// kept" guard.
pub fn apply_retention(
    times: &[jiff::Timestamp],
    keep: &Retention,
) -> Vec<(usize, Vec<&'static str>)> {
    let snaps = times
        .iter()
        .enumerate()
        .map(|(i, t)| SnapshotFile {
            time: t.to_zoned(jiff::tz::TimeZone::UTC),
            label: i.to_string(),
            ..SnapshotFile::default()
        })
        .collect();
    // only fails for empty keep options, handled in `evaluate`
    evaluate(snaps, keep).unwrap_or_default()
}
