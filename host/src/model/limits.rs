//! Limits: how much of the host one run may use.

use std::time::Duration;

/// Per-run limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock timeout of a whole run.
    pub timeout: Duration,
    /// Linear memory, bytes.
    pub memory: u64,
    /// Captured output cap per stream, bytes.
    pub output: u64,
    /// HTTP response body cap, bytes.
    pub http_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3600),
            memory: 512 << 20,
            output: 1 << 20,
            http_body: 64 << 20,
        }
    }
}
