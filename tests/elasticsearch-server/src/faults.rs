//! Injected faults: rejections, vanishing scrolls, failed snapshots, arbitrary error statuses.
//!
//! Every counter counts down as matching requests arrive; a fault fires once per unit.
//! The same faults can be set over HTTP with `POST /_cairn_test/faults` (see [`FaultsRequest`]).

use std::sync::Mutex;

use serde::Deserialize;

/// Faults the server will inject into upcoming requests. All methods take `&self`.
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    reject_bulk: usize,
    reject_bulk_items: usize,
    reject_search: usize,
    expire_scrolls_after: Option<usize>,
    snapshot_outcome: Option<(String, String)>,
    fail_requests: Vec<FailRule>,
    shard_failures: usize,
    search_timeouts: usize,
    concurrent_snapshot_errors: usize,
    drop_acknowledged_writes: usize,
}

#[derive(Debug, Clone)]
struct FailRule {
    method: String,
    path_prefix: String,
    status: u16,
    remaining: usize,
}

/// The JSON body of `POST /_cairn_test/faults`; every field is optional.
///
/// ```json
/// {"reject_bulk": 1, "reject_bulk_items": 3, "reject_search": 1, "expire_scrolls_after": 2,
///  "snapshot_outcome": {"state": "PARTIAL", "reason": "disk full"},
///  "fail_requests": [{"method": "GET", "path_prefix": "/_cat", "status": 503, "n": 1}]}
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsRequest {
    pub reject_bulk: Option<usize>,
    pub reject_bulk_items: Option<usize>,
    pub reject_search: Option<usize>,
    pub expire_scrolls_after: Option<usize>,
    pub snapshot_outcome: Option<SnapshotOutcome>,
    #[serde(default)]
    pub fail_requests: Vec<FailRequest>,
    pub shard_failures: Option<usize>,
    pub search_timeouts: Option<usize>,
    pub concurrent_snapshot_errors: Option<usize>,
    pub drop_acknowledged_writes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotOutcome {
    pub state: String,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    pub method: String,
    pub path_prefix: String,
    pub status: u16,
    pub n: usize,
}

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` `_bulk` requests are rejected whole with 429 `es_rejected_execution_exception`.
    pub fn reject_bulk(&self, n: usize) {
        self.state().reject_bulk = n;
    }

    /// The next `n` bulk items get a per-item 429 in an otherwise successful response
    /// (`"errors": true`).
    pub fn reject_bulk_items(&self, n: usize) {
        self.state().reject_bulk_items = n;
    }

    /// The next `n` search or scroll requests are rejected with 429.
    pub fn reject_search(&self, n: usize) {
        self.state().reject_search = n;
    }

    /// After `pages` more scroll continuation pages (`/_search/scroll` responses), every scroll
    /// context vanishes, so the next continuation gets 404 `search_context_missing_exception`.
    /// `0` drops them at once.
    pub fn expire_scrolls_after(&self, pages: usize) {
        self.state().expire_scrolls_after = Some(pages);
    }

    /// The next snapshot ends `PARTIAL` or `FAILED` with a shard failure carrying `reason`.
    ///
    /// # Panics
    /// If `state` is neither `PARTIAL` nor `FAILED`.
    pub fn snapshot_outcome(&self, state: &str, reason: &str) {
        assert!(
            state == "PARTIAL" || state == "FAILED",
            "snapshot_outcome state must be PARTIAL or FAILED, not {state:?}"
        );
        self.state().snapshot_outcome = Some((state.to_string(), reason.to_string()));
    }

    /// The next `n` requests whose method equals `method` (case-insensitive, `*` for any) and whose
    /// path starts with `path_prefix` get an Elasticsearch error body with `status`.
    pub fn fail_requests(&self, method: &str, path_prefix: &str, status: u16, n: usize) {
        self.state().fail_requests.push(FailRule {
            method: method.to_ascii_uppercase(),
            path_prefix: path_prefix.to_string(),
            status,
            remaining: n,
        });
    }

    /// The next `n` search or scroll pages report one failed shard (`_shards.failed: 1` with
    /// its failure) and, as a real partial result does, lack that shard's hits: the second half
    /// of the page is not returned (and, in a scroll, never will be).
    pub fn shard_failures(&self, n: usize) {
        self.state().shard_failures = n;
    }

    /// The next `n` search or scroll pages come back `"timed_out": true` with only the hits
    /// gathered in time (the first half of the page; a scroll moves past the rest).
    pub fn search_timeouts(&self, n: usize) {
        self.state().search_timeouts = n;
    }

    /// The next `n` snapshot creations are refused with 503
    /// `concurrent_snapshot_execution_exception` (another snapshot or deletion is running).
    pub fn concurrent_snapshot_errors(&self, n: usize) {
        self.state().concurrent_snapshot_errors = n;
    }

    /// The next `n` bulk or single-document index/create items are acknowledged (201) but not
    /// kept: acknowledged writes lost, as on a primary that fails before replicating. Only a
    /// count after the load can notice.
    pub fn drop_acknowledged_writes(&self, n: usize) {
        self.state().drop_acknowledged_writes = n;
    }

    /// Forgets every pending fault.
    pub fn clear(&self) {
        *self.state() = FaultState::default();
    }

    /// Applies a `POST /_cairn_test/faults` body.
    pub fn apply(&self, req: FaultsRequest) -> Result<(), String> {
        if let Some(o) = &req.snapshot_outcome
            && o.state != "PARTIAL"
            && o.state != "FAILED"
        {
            return Err(format!(
                "snapshot_outcome.state must be PARTIAL or FAILED, not [{}]",
                o.state
            ));
        }
        if let Some(n) = req.reject_bulk {
            self.reject_bulk(n);
        }
        if let Some(n) = req.reject_bulk_items {
            self.reject_bulk_items(n);
        }
        if let Some(n) = req.reject_search {
            self.reject_search(n);
        }
        if let Some(n) = req.expire_scrolls_after {
            self.expire_scrolls_after(n);
        }
        if let Some(o) = req.snapshot_outcome {
            self.snapshot_outcome(&o.state, &o.reason);
        }
        for f in req.fail_requests {
            self.fail_requests(&f.method, &f.path_prefix, f.status, f.n);
        }
        if let Some(n) = req.shard_failures {
            self.shard_failures(n);
        }
        if let Some(n) = req.search_timeouts {
            self.search_timeouts(n);
        }
        if let Some(n) = req.concurrent_snapshot_errors {
            self.concurrent_snapshot_errors(n);
        }
        if let Some(n) = req.drop_acknowledged_writes {
            self.drop_acknowledged_writes(n);
        }
        Ok(())
    }

    // ---- used by the server ---------------------------------------------------------

    fn take(counter: &mut usize) -> bool {
        if *counter > 0 {
            *counter -= 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn take_reject_bulk(&self) -> bool {
        Self::take(&mut self.state().reject_bulk)
    }

    pub(crate) fn take_reject_bulk_item(&self) -> bool {
        Self::take(&mut self.state().reject_bulk_items)
    }

    pub(crate) fn take_reject_search(&self) -> bool {
        Self::take(&mut self.state().reject_search)
    }

    /// Whether all scroll contexts must be dropped right now (`expire_scrolls_after(0)`).
    pub(crate) fn scrolls_expire_now(&self) -> bool {
        let mut s = self.state();
        if s.expire_scrolls_after == Some(0) {
            s.expire_scrolls_after = None;
            true
        } else {
            false
        }
    }

    /// Counts one served continuation page; true when the contexts must vanish after it.
    pub(crate) fn scroll_page_served(&self) -> bool {
        let mut s = self.state();
        match s.expire_scrolls_after {
            Some(n) if n <= 1 => {
                s.expire_scrolls_after = None;
                true
            }
            Some(n) => {
                s.expire_scrolls_after = Some(n - 1);
                false
            }
            None => false,
        }
    }

    pub(crate) fn take_shard_failure(&self) -> bool {
        Self::take(&mut self.state().shard_failures)
    }

    pub(crate) fn take_search_timeout(&self) -> bool {
        Self::take(&mut self.state().search_timeouts)
    }

    pub(crate) fn take_concurrent_snapshot_error(&self) -> bool {
        Self::take(&mut self.state().concurrent_snapshot_errors)
    }

    pub(crate) fn take_dropped_write(&self) -> bool {
        Self::take(&mut self.state().drop_acknowledged_writes)
    }

    pub(crate) fn take_snapshot_outcome(&self) -> Option<(String, String)> {
        self.state().snapshot_outcome.take()
    }

    pub(crate) fn take_request_failure(&self, method: &str, path: &str) -> Option<u16> {
        let mut s = self.state();
        let rule = s.fail_requests.iter_mut().find(|r| {
            r.remaining > 0
                && (r.method == "*" || r.method.eq_ignore_ascii_case(method))
                && path.starts_with(&r.path_prefix)
        })?;
        rule.remaining -= 1;
        let status = rule.status;
        s.fail_requests.retain(|r| r.remaining > 0);
        Some(status)
    }
}
