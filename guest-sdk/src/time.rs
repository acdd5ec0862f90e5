//! Wall-clock time and sleeping (`cairn:plugin/time`).
//!
//! Use [`sleep`] rather than `std::thread::sleep`: the host does not block a
//! thread meanwhile and the run's timeout still applies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::__private::time as wit;

/// The current wall-clock time.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(now_ms())
}

/// Milliseconds since the Unix epoch (UTC).
pub fn now_ms() -> u64 {
    wit::now()
}

/// Suspend the module for `duration` (at millisecond resolution, rounded up).
pub fn sleep(duration: Duration) {
    let mut millis = duration.as_millis();
    if duration.subsec_nanos() % 1_000_000 != 0 {
        millis += 1;
    }
    wit::sleep(u64::try_from(millis).unwrap_or(u64::MAX));
}
