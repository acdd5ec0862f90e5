//! Progress reports, shown as a progress bar and kept in the run record
//! (`cairn:plugin/progress`).
//!
//! ```no_run
//! use cairn_guest::progress::{self, Unit};
//!
//! progress::report(3, 10, Unit::Items); // 3 of 10 indices done
//! progress::report(4096, None, Unit::Bytes); // total unknown
//! ```

pub use crate::__private::progress::Unit;

/// Report that `done` units of work are complete, out of `total` (a number,
/// or `None` when unknown).
pub fn report(done: u64, total: impl Into<Option<u64>>, unit: Unit) {
    crate::__private::progress::report(done, total.into(), unit);
}
