//! Limits: how much of the host one run may use.

use std::time::Duration;

/// Per-run limits. Every buffer and count a module controls has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock timeout of a whole run (also bounds every host call).
    pub timeout: Duration,
    /// Linear memory and table elements, bytes.
    pub memory: u64,
    /// Captured output cap per stream, bytes.
    pub output: u64,
    /// HTTP response body cap, bytes.
    pub http_body: u64,
    /// Longest log line kept, bytes (longer ones are cut).
    pub log_line: u64,
    /// Log bytes a run keeps (later lines are counted, not kept).
    pub log_bytes: u64,
    /// State keys a job may hold.
    pub state_keys: u64,
    /// State bytes (keys and values) a job may hold.
    pub state_bytes: u64,
    /// Largest result of a task or function, and of a snapshot's notes, bytes.
    pub result: u64,
    /// Streams (artifact readers and writers) open at once.
    pub open_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3600),
            memory: 512 << 20,
            output: 1 << 20,
            http_body: 64 << 20,
            log_line: 16 << 10,
            log_bytes: 16 << 20,
            state_keys: 1000,
            state_bytes: 16 << 20,
            result: 1 << 20,
            open_streams: 16,
        }
    }
}
